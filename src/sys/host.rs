//! The machine's own name.

/// The host name (the kernel's node name), lossily decoded; empty if unknown.
pub fn name() -> String {
    let uname = rustix::system::uname();
    uname.nodename().to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_host_has_a_name() {
        assert!(!super::name().is_empty());
    }
}
