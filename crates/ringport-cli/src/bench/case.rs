//! The cases of `ringport bench --cases`: what one case loads the servers
//! with, how it is written, and which figure ranks the servers in it.
//!
//! ```text
//! 1000x512      1000 connections, 512 B messages, --pipeline in flight each
//! 1000x64p4     the same with 64 B messages, 4 in flight per connection
//! 100x16k       16 KiB messages
//! churn         100 connections at a time: connect, one 64 B echo, close
//! churn500x64   500 at a time, 64 B
//! idle          1000 connections held open, idle after one 64 B echo each
//! idle5000      5000 of them
//! udp100x512    100 UDP flows of 512 B datagrams, --pipeline outstanding each
//! unix100x512   100 Unix stream connections (the servers' --unix socket)
//! unixchurn     churn over Unix stream sockets
//! ```

use anyhow::Context;

/// What a case does with its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Long-lived connections echoing messages; ranked by server CPU per
    /// message.
    Echo,
    /// Connect, one echo, close, `conns` at a time; ranked by server CPU per
    /// connection.
    Churn,
    /// `conns` connections open and idle; ranked by the server's resident
    /// memory per connection.
    Idle,
}

/// What a case's messages travel over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// TCP over loopback: the servers' first listener.
    Tcp,
    /// UDP datagrams to the servers' `--udp` socket (same port number).
    Udp,
    /// Unix stream sockets to the servers' `--unix PATH` listener.
    Unix,
}

impl Transport {
    /// `tcp`, `udp`, `unix`.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
            Transport::Unix => "unix",
        }
    }

    /// The transport named `s`.
    ///
    /// # Errors
    /// When `s` is none of `tcp`, `udp`, `unix`.
    pub fn parse(s: &str) -> anyhow::Result<Transport> {
        match s.trim().to_ascii_lowercase().as_str() {
            "tcp" => Ok(Transport::Tcp),
            "udp" => Ok(Transport::Udp),
            "unix" => Ok(Transport::Unix),
            other => anyhow::bail!("{other:?} is not a transport (tcp, udp or unix)"),
        }
    }
}

/// One case of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Case {
    /// What the connections do.
    pub kind: Kind,
    /// What they travel over (a `udp` or `unix` prefix; TCP without one).
    pub transport: Transport,
    /// Connections (churn: open at a time).
    pub conns: usize,
    /// Bytes per message.
    pub size: usize,
    /// Messages in flight per connection (1 for churn and idle).
    pub pipeline: usize,
}

/// Connections open at a time in `churn` without a count.
const CHURN_CONNS: usize = 100;
/// Connections in `idle` without a count.
const IDLE_CONNS: usize = 1000;
/// Message size of churn and idle cases without one.
const SMALL: usize = 64;

impl Case {
    /// Parses one case; `pipeline` is the default for echo cases without a
    /// `pN` suffix.
    ///
    /// # Errors
    /// When `s` is none of the forms above or a number is out of range.
    pub fn parse(s: &str, pipeline: usize) -> anyhow::Result<Case> {
        let t = s.trim().to_ascii_lowercase();
        let (transport, t) = if let Some(rest) = t.strip_prefix("udp") {
            (Transport::Udp, rest)
        } else if let Some(rest) = t.strip_prefix("unix") {
            (Transport::Unix, rest)
        } else {
            (Transport::Tcp, t.as_str())
        };
        let mut case = if let Some(rest) = t.strip_prefix("churn") {
            let (conns, size) = match rest.split_once(['x', '×']) {
                Some((c, b)) => (count(c, CHURN_CONNS)?, bytes(b)?),
                None => (count(rest, CHURN_CONNS)?, SMALL),
            };
            Case {
                kind: Kind::Churn,
                transport,
                conns,
                size,
                pipeline: 1,
            }
        } else if let Some(rest) = t.strip_prefix("idle") {
            Case {
                kind: Kind::Idle,
                transport,
                conns: count(rest, IDLE_CONNS)?,
                size: SMALL,
                pipeline: 1,
            }
        } else {
            let (c, rest) = t
                .split_once(['x', '×'])
                .context("not CONNSxSIZE[pN], churn[N[xSIZE]] or idle[N]")?;
            let (b, p) = match rest.split_once('p') {
                Some((b, p)) => (b, p.trim().parse().context("pipeline after `p`")?),
                None => (rest, pipeline),
            };
            Case {
                kind: Kind::Echo,
                transport,
                conns: c.trim().parse().context("connections")?,
                size: bytes(b)?,
                pipeline: p,
            }
        };
        anyhow::ensure!(
            (1..=100_000).contains(&case.conns),
            "connections must be 1..=100000"
        );
        case = case.over(case.transport)?;
        anyhow::ensure!(
            (1..=16 << 20).contains(&case.size),
            "size must be 1 B..=16 MiB"
        );
        anyhow::ensure!(
            (1..=1024).contains(&case.pipeline),
            "pipeline must be 1..=1024"
        );
        Ok(case)
    }

    /// The case over `transport`.
    ///
    /// # Errors
    /// Idle cases are TCP only; UDP has echo cases only, of datagrams of
    /// 24 B (the load's header) up to 65507 B.
    pub fn over(self, transport: Transport) -> anyhow::Result<Case> {
        match (transport, self.kind) {
            (Transport::Tcp, _) | (Transport::Unix, Kind::Echo | Kind::Churn) => {}
            (Transport::Udp, Kind::Echo) => anyhow::ensure!(
                (crate::load::DGRAM_HEADER..=crate::load::DGRAM_MAX).contains(&self.size),
                "a UDP datagram must be {}..={} B",
                crate::load::DGRAM_HEADER,
                crate::load::DGRAM_MAX
            ),
            (t, k) => anyhow::bail!("{k:?} cases do not run over {}", t.name()),
        }
        Ok(Case { transport, ..self })
    }

    /// Parses a comma-separated list's items, naming the one that fails.
    ///
    /// # Errors
    /// As [`Case::parse`], with the case in the message.
    pub fn parse_all(cases: &[String], pipeline: usize) -> anyhow::Result<Vec<Case>> {
        cases
            .iter()
            .map(|c| Case::parse(c, pipeline).with_context(|| format!("case {c:?}")))
            .collect()
    }

    /// `1000 × 64 B, 4 in flight`, `churn 100 × 64 B`, `idle 1000`.
    pub fn label(&self) -> String {
        let size = if self.size >= 1024 && self.size % 1024 == 0 {
            format!("{} KiB", self.size / 1024)
        } else {
            format!("{} B", self.size)
        };
        let over = match self.transport {
            Transport::Tcp => "",
            Transport::Udp => "udp ",
            Transport::Unix => "unix ",
        };
        match self.kind {
            Kind::Echo if self.pipeline > 1 => {
                format!("{over}{} × {size}, {} in flight", self.conns, self.pipeline)
            }
            Kind::Echo => format!("{over}{} × {size}", self.conns),
            Kind::Churn => format!("{over}churn {} × {size}", self.conns),
            Kind::Idle => format!("{over}idle {}", self.conns),
        }
    }

    /// The figure that ranks servers in this case, with its unit.
    pub fn figure(&self) -> &'static str {
        match self.kind {
            Kind::Echo => "CPU µs/msg",
            Kind::Churn => "CPU µs/conn",
            Kind::Idle => "RSS KiB/conn",
        }
    }
}

/// A count, or `default` when empty.
fn count(s: &str, default: usize) -> anyhow::Result<usize> {
    let s = s.trim();
    if s.is_empty() {
        Ok(default)
    } else {
        s.parse().with_context(|| format!("{s:?} is not a count"))
    }
}

/// `64`, `64b`, `16k`, `16KiB`.
fn bytes(s: &str) -> anyhow::Result<usize> {
    let s = s.trim().trim_end_matches("ib").trim_end_matches('b');
    match s.strip_suffix('k') {
        Some(k) => Ok(k.trim().parse::<usize>().context("size")? * 1024),
        None => s.parse().context("size"),
    }
}

#[cfg(test)]
mod tests {
    use super::{Case, Kind, Transport};

    fn echo(conns: usize, size: usize, pipeline: usize) -> Case {
        Case {
            kind: Kind::Echo,
            transport: Transport::Tcp,
            conns,
            size,
            pipeline,
        }
    }

    #[test]
    fn echo_cases_parse() {
        assert_eq!(Case::parse("100x16k", 1).unwrap(), echo(100, 16384, 1));
        assert_eq!(Case::parse("1×64B", 1).unwrap(), echo(1, 64, 1));
        assert_eq!(Case::parse("1000x64p4", 1).unwrap(), echo(1000, 64, 4));
        assert_eq!(Case::parse("100x16KiBp2", 1).unwrap(), echo(100, 16384, 2));
        // Without a suffix, --pipeline decides.
        assert_eq!(Case::parse("10x64", 8).unwrap(), echo(10, 64, 8));
        assert_eq!(
            Case::parse("1000x64p4", 1).unwrap().label(),
            "1000 × 64 B, 4 in flight"
        );
    }

    #[test]
    fn churn_and_idle_cases_parse() {
        let c = Case::parse("churn", 4).unwrap();
        assert_eq!(
            (c.kind, c.conns, c.size, c.pipeline),
            (Kind::Churn, 100, 64, 1)
        );
        let c = Case::parse("churn500x512", 1).unwrap();
        assert_eq!((c.kind, c.conns, c.size), (Kind::Churn, 500, 512));
        assert_eq!(c.label(), "churn 500 × 512 B");
        let c = Case::parse("idle", 1).unwrap();
        assert_eq!((c.kind, c.conns, c.size), (Kind::Idle, 1000, 64));
        let c = Case::parse("idle5000", 1).unwrap();
        assert_eq!((c.kind, c.conns), (Kind::Idle, 5000));
        assert_eq!(c.figure(), "RSS KiB/conn");
    }

    #[test]
    fn udp_and_unix_cases_parse() {
        let c = Case::parse("udp100x512", 1).unwrap();
        assert_eq!(
            c,
            Case {
                transport: Transport::Udp,
                ..echo(100, 512, 1)
            }
        );
        assert_eq!(c.label(), "udp 100 × 512 B");
        assert_eq!(c.figure(), "CPU µs/msg");
        let c = Case::parse("UDP10x64p8", 1).unwrap();
        assert_eq!((c.transport, c.pipeline), (Transport::Udp, 8));
        assert_eq!(c.label(), "udp 10 × 64 B, 8 in flight");
        let c = Case::parse("unix100x512", 1).unwrap();
        assert_eq!((c.transport, c.kind), (Transport::Unix, Kind::Echo));
        assert_eq!(c.label(), "unix 100 × 512 B");
        let c = Case::parse("unixchurn50", 1).unwrap();
        assert_eq!(
            (c.transport, c.kind, c.conns),
            (Transport::Unix, Kind::Churn, 50)
        );
        // A TCP case moved over another transport, as `NAME:TRANSPORT` does.
        let c = Case::parse("100x512", 1).unwrap().over(Transport::Unix);
        assert_eq!(c.unwrap().transport, Transport::Unix);
        assert!(Case::parse("idle", 1)
            .unwrap()
            .over(Transport::Udp)
            .is_err());
    }

    #[test]
    fn bad_cases_are_refused() {
        for bad in [
            "100",
            "x64",
            "100x",
            "100x64p",
            "100x64p0",
            "0x64",
            "churnx",
            "idlefoo",
            "10x0",
            "10x64p2000",
            "udpchurn",
            "udpidle",
            "unixidle",
            "udp10x16",
            "udp10x65508",
            "udp",
        ] {
            assert!(Case::parse(bad, 1).is_err(), "{bad:?} parsed");
        }
    }
}
