//! The crate's files form no import cycle: each file's `crate::` paths
//! (outside its unit tests) name only files below it.

use std::collections::{BTreeMap, BTreeSet};

/// The crate files each file names through `crate::x` or `use crate::{x, ..}`.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
    let files: BTreeMap<String, String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&p).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or("").to_owned();
            (name, code)
        })
        .filter(|(name, _)| name != "lib")
        .collect();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    files
        .iter()
        .map(|(name, code)| {
            let mut deps = BTreeSet::new();
            for (i, _) in code.match_indices("crate::") {
                let rest = &code[i + "crate::".len()..];
                if let Some(list) = rest.strip_prefix('{') {
                    let list = &list[..list.find('}').unwrap_or(0)];
                    deps.extend(list.split(',').map(|p| ident(p.trim())));
                } else {
                    deps.insert(ident(rest));
                }
            }
            deps.retain(|d| d != name && files.contains_key(d));
            (name.clone(), deps)
        })
        .collect()
}

#[test]
fn no_import_cycle_between_files() {
    let graph = imports();
    assert!(graph.len() > 10, "read the crate's files: {graph:?}");
    // Peel off files that import nothing left; a cycle is what remains.
    let mut left = graph.clone();
    loop {
        let leaves: Vec<String> = left
            .iter()
            .filter(|(_, deps)| deps.iter().all(|d| !left.contains_key(d)))
            .map(|(n, _)| n.clone())
            .collect();
        if leaves.is_empty() {
            break;
        }
        for l in leaves {
            left.remove(&l);
        }
    }
    assert!(left.is_empty(), "files in an import cycle: {left:?}");
}
