//! Upload validation never panics: any bytes are either a workflow module or
//! a clear refusal.
#![no_main]

use std::sync::OnceLock;

use cairn::runtime::{GuestLimits, Runtime};
use libfuzzer_sys::fuzz_target;

struct World {
    tokio: tokio::runtime::Runtime,
    runtime: Runtime<cairn::executor::RunHost>,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| World {
        tokio: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
        runtime: Runtime::new(None, GuestLimits::default()).unwrap(),
    })
}

fuzz_target!(|bytes: &[u8]| {
    let world = world();
    // A valid module is fine too; what matters is that nothing panics.
    let _ = world.tokio.block_on(world.runtime.validate(bytes));
});
