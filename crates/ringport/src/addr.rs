//! A socket address of any family the port serves: IP (v4 or v6), or a Unix
//! socket's path, abstract name or no name at all.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use socket2::SockAddr;

/// A socket address: what [`Handle::local_address`](crate::Handle::local_address)
/// and [`Handle::peer_address`](crate::Handle::peer_address) return, what an
/// accept reports ([`Accepted`](crate::Accepted)), where a datagram came from
/// ([`Completion::address`](crate::Completion::address)), and what
/// [`op::SendTo`](crate::op::SendTo) and [`op::Connect`](crate::op::Connect)
/// take.
///
/// ```
/// use ringport::Address;
/// let ip: Address = "127.0.0.1:80".parse::<std::net::SocketAddr>()?.into();
/// assert_eq!(ip.to_string(), "127.0.0.1:80");
/// assert_eq!(Address::Path("/tmp/s".into()).to_string(), "/tmp/s");
/// assert_eq!(Address::Abstract(b"name".to_vec()).to_string(), "@name");
/// assert_eq!(Address::Unnamed.to_string(), "(unnamed)");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Address {
    /// An IPv4 or IPv6 address and port.
    Ip(SocketAddr),
    /// A Unix socket bound to a path in the file system.
    Path(PathBuf),
    /// A Unix socket bound to a name in the abstract namespace (Linux; the
    /// name without its leading NUL byte).
    Abstract(Vec<u8>),
    /// A Unix socket bound to nothing (a client that did not bind, one end
    /// of a socket pair).
    Unnamed,
}

impl Address {
    /// The IP address, if it is one.
    ///
    /// ```
    /// use ringport::Address;
    /// let a = Address::from(std::net::SocketAddr::from(([10, 0, 0, 1], 9)));
    /// assert_eq!(a.ip().map(|a| a.port()), Some(9));
    /// assert_eq!(Address::Unnamed.ip(), None);
    /// ```
    pub fn ip(&self) -> Option<SocketAddr> {
        match self {
            Address::Ip(a) => Some(*a),
            _ => None,
        }
    }

    /// An abstract Unix socket name (`name` without the leading NUL).
    ///
    /// ```
    /// let a = ringport::Address::abstract_name("my-service");
    /// assert_eq!(a, ringport::Address::Abstract(b"my-service".to_vec()));
    /// ```
    pub fn abstract_name(name: impl AsRef<[u8]>) -> Address {
        Address::Abstract(name.as_ref().to_vec())
    }

    /// The address as the kernel takes it.
    ///
    /// ```
    /// let a = ringport::Address::Path("/tmp/x.sock".into());
    /// assert!(a.to_sock_addr()?.is_unix());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidInput` when a path or name is too long for a Unix address.
    pub fn to_sock_addr(&self) -> io::Result<SockAddr> {
        match self {
            Address::Ip(a) => Ok(SockAddr::from(*a)),
            Address::Path(p) => SockAddr::unix(p),
            Address::Abstract(name) => {
                let mut bytes = Vec::with_capacity(name.len() + 1);
                bytes.push(0);
                bytes.extend_from_slice(name);
                SockAddr::unix(Path::new(std::ffi::OsStr::from_bytes(&bytes)))
            }
            // The family alone: what the kernel reports for an unnamed
            // socket.
            Address::Unnamed => SockAddr::unix(""),
        }
    }
}

impl From<SocketAddr> for Address {
    fn from(a: SocketAddr) -> Address {
        Address::Ip(a)
    }
}

impl From<&SockAddr> for Address {
    /// Any family other than IP and Unix reads as [`Address::Unnamed`].
    fn from(a: &SockAddr) -> Address {
        if let Some(ip) = a.as_socket() {
            Address::Ip(ip)
        } else if let Some(path) = a.as_pathname() {
            Address::Path(path.to_path_buf())
        } else if let Some(name) = a.as_abstract_namespace() {
            Address::Abstract(name.to_vec())
        } else {
            Address::Unnamed
        }
    }
}

impl From<SockAddr> for Address {
    fn from(a: SockAddr) -> Address {
        Address::from(&a)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Ip(a) => a.fmt(f),
            Address::Path(p) => p.display().fmt(f),
            Address::Abstract(name) => write!(f, "@{}", String::from_utf8_lossy(name)),
            Address::Unnamed => f.write_str("(unnamed)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_goes_to_the_kernel_form_and_back() {
        for a in [
            Address::Ip(SocketAddr::from(([127, 0, 0, 1], 5))),
            Address::Ip("[::1]:7".parse().unwrap()),
            Address::Path("/tmp/ringport-addr".into()),
            Address::abstract_name("ringport\0with nul"),
            Address::Unnamed,
        ] {
            assert_eq!(Address::from(a.to_sock_addr().unwrap()), a);
        }
    }

    #[test]
    fn a_path_too_long_is_refused() {
        let long = Address::Path(PathBuf::from("/".repeat(200)));
        assert_eq!(
            long.to_sock_addr().unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }
}
