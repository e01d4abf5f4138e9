//! Scenarios that prove the harness itself: a pass, a panic, a hang.
use crate::scenario::Ctx;
use anyhow::Result;

pub fn ok(ctx: &mut Ctx) -> Result<()> {
    let kernel = ctx.sh.run("uname -r")?;
    ctx.check(
        !kernel.trim().is_empty(),
        format!("kernel {}", kernel.trim()),
    )
}

pub fn panics(ctx: &mut Ctx) -> Result<()> {
    ctx.sh.note("about to panic on purpose");
    panic!("selftest_panic panics on purpose");
}

pub fn hangs(ctx: &mut Ctx) -> Result<()> {
    ctx.sh.note("about to hang on purpose");
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
