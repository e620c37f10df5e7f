//! This emperor's name in a fleet.

/// The host name this emperor writes to a fleet's sources: `cli_value`
/// (`--host`) when given and not blank, else the machine's hostname.
pub fn host_name(cli_value: Option<&str>) -> String {
    match cli_value.map(str::trim).filter(|name| !name.is_empty()) {
        Some(name) => name.to_owned(),
        None => crate::sys::host::name(),
    }
}

#[cfg(test)]
mod tests {
    use super::host_name;

    #[test]
    fn the_option_wins_over_the_machine() {
        assert_eq!(host_name(Some("web-1")), "web-1");
        assert_eq!(host_name(None), crate::sys::host::name());
        assert_eq!(host_name(Some("  ")), crate::sys::host::name());
    }
}
