//! Argument parsing: defaults, the socket option and variable, every
//! subcommand's arguments and help.

use std::path::Path;

use clap::{CommandFactory, Parser};
use dom0ctl::cli::Endpoint;
use dom0ctl::cli::{Command, DEFAULT_TIMEOUT_SECS};
use dom0ctl::{Cli, DEFAULT_KEY_FILE, DEFAULT_SOCKET, KEY_FILE_ENV, SOCKET_ENV};

fn unix(path: &str) -> Endpoint {
    Endpoint::Unix(path.into())
}

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("dom0ctl").chain(args.iter().copied()))
}

#[test]
fn socket_comes_from_option_then_variable_then_default() {
    // The only test that touches the variable.
    std::env::remove_var(SOCKET_ENV);
    let cli = parse(&["list"]).unwrap();
    assert_eq!(cli.connect, unix(DEFAULT_SOCKET));
    assert_eq!(DEFAULT_SOCKET, "/tmp/xen-core-mgmt.sock");
    assert_eq!(cli.timeout, DEFAULT_TIMEOUT_SECS);
    std::env::set_var(SOCKET_ENV, "/run/env.sock");
    assert_eq!(parse(&["list"]).unwrap().connect, unix("/run/env.sock"));
    let cli = parse(&["list", "--connect", "/run/opt.sock"]).unwrap();
    assert_eq!(cli.connect, unix("/run/opt.sock"));
    std::env::set_var(SOCKET_ENV, "tcp://127.0.0.1:7000");
    assert_eq!(
        parse(&["list"]).unwrap().connect,
        Endpoint::Tcp("127.0.0.1:7000".into())
    );
    std::env::remove_var(SOCKET_ENV);
    assert!(parse(&["list", "--connect", "tcp://nowhere"]).is_err());
}

#[test]
fn key_file_comes_from_option_then_variable_then_default() {
    // The only test that touches the variable.
    std::env::remove_var(KEY_FILE_ENV);
    assert_eq!(
        parse(&["list"]).unwrap().key_file,
        Path::new(DEFAULT_KEY_FILE)
    );
    assert_eq!(DEFAULT_KEY_FILE, "/tmp/xen-core-mgmt.key");
    std::env::set_var(KEY_FILE_ENV, "/run/env.key");
    assert_eq!(
        parse(&["list"]).unwrap().key_file,
        Path::new("/run/env.key")
    );
    let cli = parse(&["list", "--key-file", "/run/opt.key"]).unwrap();
    assert_eq!(cli.key_file, Path::new("/run/opt.key"));
    std::env::remove_var(KEY_FILE_ENV);
}

#[test]
fn subcommands_take_their_arguments() {
    let cli = parse(&["create", "-c", "guests/hello.toml"]).unwrap();
    assert!(
        matches!(cli.command, Command::Create(ref a) if a.console && a.config == Path::new("guests/hello.toml"))
    );
    let cli = parse(&["list", "--json", "web", "3"]).unwrap();
    assert!(matches!(cli.command, Command::List(ref a) if a.json && a.domains == ["web", "3"]));
    let cli = parse(&["shutdown", "-R", "-w", "web"]).unwrap();
    assert!(
        matches!(cli.command, Command::Shutdown(ref a) if a.reboot && a.control.wait && !a.control.force && a.control.domain == "web")
    );
    let cli = parse(&["shutdown", "-F", "web"]).unwrap();
    assert!(
        matches!(cli.command, Command::Shutdown(ref a) if !a.reboot && a.control.force && !a.control.wait)
    );
    let cli = parse(&["reboot", "-w", "-F", "web"]).unwrap();
    assert!(
        matches!(cli.command, Command::Reboot(ref a) if a.wait && a.force && a.domain == "web")
    );
    let cli = parse(&["console", "--no-follow", "web"]).unwrap();
    assert!(matches!(cli.command, Command::Console(ref a) if a.no_follow && a.domain == "web"));
    for verb in ["pause", "unpause", "destroy"] {
        assert!(parse(&[verb, "web"]).is_ok());
    }
    assert!(matches!(parse(&["dmesg"]).unwrap().command, Command::Dmesg));
    assert!(matches!(parse(&["info", "--json"]).unwrap().command, Command::Info(ref a) if a.json));
    let cli = parse(&[
        "network-attach",
        "web",
        "--trunk",
        "10,20",
        "--mac",
        "00:16:3e:00:00:0a",
    ])
    .unwrap();
    assert!(matches!(cli.command, Command::NetworkAttach(ref a)
        if a.domain == "web" && a.trunk == Some(vec![10, 20]) && a.vlan.is_none()
            && a.mac == Some([0, 0x16, 0x3e, 0, 0, 10])));
    let cli = parse(&["network-detach", "web", "00:16:3e:00:00:0a"]).unwrap();
    assert!(matches!(cli.command, Command::NetworkDetach(ref a) if a.vif == "00:16:3e:00:00:0a"));
    let cli = parse(&["network-list", "--json"]).unwrap();
    assert!(matches!(cli.command, Command::NetworkList(ref a) if a.json && a.domain.is_none()));
    assert!(parse(&["vswitch", "show", "--json"]).is_ok());
}

#[test]
fn bad_arguments_are_usage_errors() {
    for args in [
        &["destroy"][..],
        &["create"],
        &["frobnicate"],
        &["list", "--timeout", "0"],
        &[],
        &["network-attach", "web", "--vlan", "10", "--trunk", "20"],
        &["network-attach", "web", "--mac", "00:16:3e"],
        &["network-attach", "web", "--vlan", "x"],
        &["network-detach", "web"],
        &["vswitch"],
    ] {
        let e = parse(args).unwrap_err();
        assert_eq!(e.exit_code(), 2, "{args:?}: {e}");
    }
}

#[test]
fn every_subcommand_has_help_with_an_example() {
    let mut cli = Cli::command();
    for sub in cli.get_subcommands_mut() {
        let help = sub.render_long_help().to_string();
        assert!(help.contains("Example"), "{}: {help}", sub.get_name());
    }
    let main = Cli::command().render_long_help().to_string();
    assert!(main.contains("Exit status"), "{main}");
    assert!(main.contains("DOM0CTL_SOCKET"), "{main}");
}

#[test]
fn volume_and_block_commands_check_their_arguments() {
    let cli = parse(&["volume", "create", "data", "2GiB"]).unwrap();
    assert!(matches!(
        cli.command,
        Command::Volume(dom0ctl::cli::VolumeArgs {
            command: dom0ctl::cli::VolumeCommand::Create { ref name, size: 2147483648 }
        }) if name == "data"
    ));
    for (args, needle) in [
        (
            &["volume", "create", "data", "64"][..],
            "the unit must be MiB or GiB",
        ),
        (&["volume", "create", "data", "0MiB"], "cannot be empty"),
        (
            &["volume", "create", "a/b", "1MiB"],
            "'/' is not allowed in a volume name",
        ),
        (&["block-attach", "web", "data"], "<VDEV>"),
    ] {
        let e = parse(args).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains(needle), "{e}");
    }
    let cli = parse(&["block-attach", "web", "data", "xvda", "--read-only"]).unwrap();
    assert!(matches!(cli.command, Command::BlockAttach(ref a) if a.read_only && a.vdev == "xvda"));
    assert!(
        matches!(parse(&["block-list", "--json"]).unwrap().command, Command::BlockList(ref a) if a.domain.is_none() && a.json)
    );
    assert!(matches!(
        parse(&["block-detach", "3", "xvdb"]).unwrap().command,
        Command::BlockDetach(_)
    ));
}
