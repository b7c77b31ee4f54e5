//! What a component must export and may import to run here, decided from
//! its top-level import and export names: read from the bytes before
//! anything is compiled (an upload that cannot run costs no compile), and
//! from a compiled component's type when one is loaded from the cache.
//!
//! The host serves every interface it lets a guest import, and none of
//! them grants ambient authority: `wasi:filesystem` has no preopened
//! directories, `wasi:sockets` refuses every operation (`access-denied`),
//! `wasi:cli` has no environment or arguments, clocks and random numbers
//! are journaled, and `wasi:http/outgoing-handler` works only inside a
//! workflow's step, to the hosts of the module's allow-list. Language
//! runtimes (CPython, StarlingMonkey, libc) import these whether or not the
//! program uses them, so refusing them would refuse those languages.

use super::UploadError;
use crate::domain::ModuleKind;

/// The interface a workflow module exports.
pub(super) const WORKFLOWS_EXPORT: &str = "cairn:workflow/workflows@0.1.0";
/// The interface a handler module exports (any WASI 0.2 version).
const HANDLER_EXPORT_PREFIX: &str = "wasi:http/incoming-handler@0.2.";
/// The Cairn package a guest may import, at its one version.
const CAIRN_PACKAGE: &str = "cairn:workflow/";
const CAIRN_VERSION: &str = "0.1.0";
/// The WASI 0.2 packages the host serves, at any 0.2.x up to the newest
/// the host links ([`NEWEST_WASI`]); wasmtime resolves an older 0.2.x
/// import to the same implementation.
const WASI_PACKAGES: &[&str] = &[
    "cli",
    "io",
    "clocks",
    "random",
    "filesystem",
    "sockets",
    "http",
];
/// The newest WASI 0.2 release whose interfaces the host links.
pub const NEWEST_WASI: &str = "0.2.12";

/// The top-level import and export names of the component in `bytes`,
/// without compiling it; an error for bytes that are no component.
pub(super) fn names_in(bytes: &[u8]) -> Result<(Vec<String>, Vec<String>), UploadError> {
    use wasmparser::{Parser, Payload};
    let (mut imports, mut exports) = (Vec::new(), Vec::new());
    // Nested modules and components come as their own payloads, each
    // ended by an `End`; only the outermost names count.
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| UploadError::Invalid(e.to_string()))?;
        match payload {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) if depth > 0 => depth -= 1,
            Payload::ComponentImportSection(section) if depth == 0 => {
                for import in section {
                    let import = import.map_err(|e| UploadError::Invalid(e.to_string()))?;
                    imports.push(import.name.name.to_owned());
                }
            }
            Payload::ComponentExportSection(section) if depth == 0 => {
                for export in section {
                    let export = export.map_err(|e| UploadError::Invalid(e.to_string()))?;
                    exports.push(export.name.name.to_owned());
                }
            }
            _ => {}
        }
    }
    Ok((imports, exports))
}

/// Why the host cannot serve `import`, if it cannot.
fn refusal(import: &str) -> Option<String> {
    let (path, version) = match import.split_once('@') {
        Some((path, version)) => (path, Some(version)),
        None => (import, None),
    };
    if let Some(interface) = path.strip_prefix(CAIRN_PACKAGE) {
        return match version {
            Some(CAIRN_VERSION) => None,
            _ => Some(format!(
                "{import}: the host serves cairn:workflow/{interface}@{CAIRN_VERSION} only"
            )),
        };
    }
    let package = path
        .strip_prefix("wasi:")
        .and_then(|rest| rest.split_once('/'))
        .map(|(package, _)| package);
    match (package, version) {
        (Some(package), Some(version)) if WASI_PACKAGES.contains(&package) => {
            let served = version.strip_prefix("0.2.").and_then(|patch| {
                let newest: u32 = NEWEST_WASI.rsplit('.').next()?.parse().ok()?;
                patch.parse::<u32>().ok().filter(|p| *p <= newest)
            });
            match served {
                Some(_) => None,
                None => Some(format!(
                    "{import}: the host serves WASI 0.2.0 to {NEWEST_WASI} (rebuild against WASI 0.2)"
                )),
            }
        }
        (Some(package), _) if WASI_PACKAGES.contains(&package) => Some(format!(
            "{import}: an unversioned WASI import; the host serves WASI 0.2.0 to {NEWEST_WASI}"
        )),
        _ => Some(format!(
            "{import}: the host has no implementation of it (it serves cairn:workflow and WASI 0.2 {})",
            WASI_PACKAGES.join(", ")
        )),
    }
}

/// What kind of module a component with these names is, or why it cannot
/// run here: every problem at once, each with what is accepted.
pub(super) fn classify(imports: &[String], exports: &[String]) -> Result<ModuleKind, UploadError> {
    let kind = if exports.iter().any(|name| name == WORKFLOWS_EXPORT) {
        Some(ModuleKind::Workflow)
    } else if exports
        .iter()
        .any(|name| name.starts_with(HANDLER_EXPORT_PREFIX))
    {
        Some(ModuleKind::Handler)
    } else {
        None
    };
    let mut problems = Vec::new();
    if kind.is_none() {
        problems.push(format!(
            "it is neither a workflow module nor an HTTP handler: a workflow module exports {WORKFLOWS_EXPORT}, a handler wasi:http/incoming-handler@0.2.x, and it exports [{}]",
            exports.join(", ")
        ));
    }
    let refused: Vec<String> = imports.iter().filter_map(|name| refusal(name)).collect();
    if !refused.is_empty() {
        problems.push(format!(
            "it imports what the host cannot serve: {}",
            refused.join("; ")
        ));
    }
    match kind {
        Some(kind) if problems.is_empty() => Ok(kind),
        _ => Err(UploadError::WrongWorld(problems.join("; "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn what_language_runtimes_import_is_served() {
        let imports = names(&[
            "cairn:workflow/events@0.1.0",
            "wasi:filesystem/preopens@0.2.9",
            "wasi:sockets/tcp@0.2.12",
            "wasi:io/streams@0.2.0",
            "wasi:http/types@0.2.10",
        ]);
        assert_eq!(
            classify(&imports, &names(&[WORKFLOWS_EXPORT])),
            Ok(ModuleKind::Workflow)
        );
        assert_eq!(
            classify(&[], &names(&["wasi:http/incoming-handler@0.2.10"])),
            Ok(ModuleKind::Handler)
        );
    }

    #[test]
    fn refusals_name_each_import_and_what_is_served() {
        let imports = names(&[
            "wasi:keyvalue/store@0.2.0",
            "wasi:io/streams@0.3.0",
            "wasi:clocks/wall-clock@0.2.99",
            "cairn:workflow/events@0.2.0",
            "wasi:io/error@0.2.1",
        ]);
        let Err(UploadError::WrongWorld(message)) = classify(&imports, &names(&[WORKFLOWS_EXPORT]))
        else {
            panic!("refused");
        };
        for named in [
            "wasi:keyvalue/store@0.2.0: the host has no implementation",
            "wasi:io/streams@0.3.0: the host serves WASI 0.2.0 to 0.2.12",
            "wasi:clocks/wall-clock@0.2.99",
            "cairn:workflow/events@0.2.0: the host serves cairn:workflow/events@0.1.0 only",
        ] {
            assert!(message.contains(named), "{named:?} in {message}");
        }
        assert!(!message.contains("wasi:io/error"), "{message}");
        assert!(!message.contains("neither"), "{message}");
        let Err(UploadError::WrongWorld(neither)) = classify(&[], &names(&["x"])) else {
            panic!("refused");
        };
        assert!(
            neither.contains("neither a workflow module nor an HTTP handler"),
            "{neither}"
        );
    }
}
