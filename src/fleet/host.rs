//! This emperor's name in its fleet.

/// The name this emperor uses in everything it writes to a fleet's sources:
/// `--host` when given, else the machine's hostname.
pub fn host_name(cli_value: Option<&str>) -> String {
    match cli_value {
        Some(name) if !name.is_empty() => name.to_owned(),
        _ => crate::sys::host::name(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_flag_wins_over_the_hostname() {
        assert_eq!(super::host_name(Some("web-1")), "web-1");
        assert_eq!(super::host_name(None), crate::sys::host::name());
    }
}
