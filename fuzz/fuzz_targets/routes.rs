//! A routes manifest, whatever its bytes, is parsed and checked into routes
//! or refused with a message; the routes it yields go into a route table
//! and match request paths without a panic.
#![no_main]

use cairn::domain::ModuleName;
use cairn::triggers::{Manifest, ModuleRole, RouteTable, fill_template};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&[u8], Vec<String>, bool)| {
    let (json, segments, handler) = input;
    let Ok(manifest) = Manifest::parse(json) else {
        return;
    };
    let workflows = ["steps_workflow".to_owned(), "order".to_owned()];
    let role = if handler {
        ModuleRole::Handler
    } else {
        ModuleRole::Workflows(&workflows)
    };
    let Ok(routes) = manifest.check(role, 300_000) else {
        return;
    };
    let module = ModuleName::parse("fuzzed").expect("a valid name");
    let mut table = RouteTable::default();
    if table.check(&module, &routes).is_err() {
        return;
    }
    table.replace(&module, routes);
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    for method in ["GET", "POST", "PUT", "DELETE"] {
        if let Some(found) = table.find(method, &segments) {
            let _ = fill_template("run-{id}-{x}", &found.params);
        }
    }
    let _ = table.methods_for(&segments);
});
