//! A script call whose keys and arguments stay readable ([`Call`]), so that it runs on its own or
//! as one op of a bundle (`bundle.rs`), as its [`Runs`] says; and [`ScriptArgs`], what both it and
//! redis's own `ScriptInvocation` take keys and arguments through (`add_event` writes to either).

use ::redis::{Script, ScriptInvocation, ToRedisArgs};

/// Something a script's keys and arguments are added to.
pub(super) trait ScriptArgs {
    fn add_key(&mut self, key: impl ToRedisArgs);
    fn add_arg(&mut self, arg: impl ToRedisArgs);
}

impl ScriptArgs for ScriptInvocation<'_> {
    fn add_key(&mut self, key: impl ToRedisArgs) {
        self.key(key);
    }

    fn add_arg(&mut self, arg: impl ToRedisArgs) {
        self.arg(arg);
    }
}

/// An op of a bundle (`bundle.lua`), which runs it as the Lua function named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// `claim_first` (`claim_first.lua`).
    First,
    /// `claim_task` (`claim_task.lua`).
    Claim,
    /// `end_task` (`end_task.lua`).
    End,
}

/// How a call runs: as a script of its own, or as one op of the node's next bundle.
#[derive(Clone, Copy)]
pub(super) enum Runs<'s> {
    Alone(&'s Script),
    Bundled(Kind),
}

/// A script call, with its keys and arguments kept.
pub(super) struct Call<'s> {
    pub(super) runs: Runs<'s>,
    pub(super) keys: Vec<Vec<u8>>,
    pub(super) args: Vec<Vec<u8>>,
}

impl<'s> Call<'s> {
    pub(super) fn new(runs: Runs<'s>) -> Self {
        Call {
            runs,
            keys: Vec::with_capacity(12),
            args: Vec::with_capacity(16),
        }
    }

    pub(super) fn key(&mut self, key: impl ToRedisArgs) -> &mut Self {
        self.keys.extend(key.to_redis_args());
        self
    }

    pub(super) fn arg(&mut self, arg: impl ToRedisArgs) -> &mut Self {
        self.args.extend(arg.to_redis_args());
        self
    }

    /// The call as redis runs `script` (by its digest, loading it if Redis lost it).
    pub(super) fn invocation(&self, script: &'s Script) -> ScriptInvocation<'s> {
        let mut invocation = script.prepare_invoke();
        for key in &self.keys {
            invocation.key(&key[..]);
        }
        for arg in &self.args {
            invocation.arg(&arg[..]);
        }
        invocation
    }
}

impl ScriptArgs for Call<'_> {
    fn add_key(&mut self, key: impl ToRedisArgs) {
        self.key(key);
    }

    fn add_arg(&mut self, arg: impl ToRedisArgs) {
        self.arg(arg);
    }
}
