//! A domain's standard tree, as libxl writes it at create
//! (`libxl__domain_make`, `libxl__build_post`, `libxl__device_console_add`
//! in `tools/libs/light/`): `/local/domain/N` readable by the domain
//! (`n0 rN`), the keys the guest may write (`control/shutdown`,
//! `control/feature-*`, `data`, ...) owned by it (`nN`), and
//! `/vm/<uuid>` with its name and uuid. xen-core has no domain handles,
//! so the uuid is made from the domid (`00000000-0000-0000-0000-<N>`).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use xenstore::DomId;

/// `LIBXL_XENCONSOLE_LIMIT`: the console's output limit, bytes.
pub const XENCONSOLE_LIMIT: u32 = 1_048_576;

/// What the toolstack knows of a new domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewDomain<'a> {
    /// Its id.
    pub domid: DomId,
    /// Its name.
    pub name: &'a str,
    /// Memory it may have, KiB (`memory/static-max`).
    pub max_memkb: u64,
    /// Memory it is asked to use, KiB (`memory/target`).
    pub target_memkb: u64,
    /// vCPUs (`cpu/<i>/availability`).
    pub vcpus: u32,
    /// Store ring GFN and the port it offers dom0.
    pub store: (u64, u32),
    /// Console ring GFN and port, if it has a PV console.
    pub console: Option<(u64, u32)>,
}

/// One node to write: path, value, and permissions (Xen's strings,
/// owner first) if they differ from the parent's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// Absolute path.
    pub path: String,
    /// Value.
    pub value: String,
    /// `XS_SET_PERMS` strings, e.g. `["n0", "r5"]`.
    pub perms: Option<Vec<String>>,
}

/// `/local/domain/N`.
pub fn dom_path(domid: DomId) -> String {
    format!("/local/domain/{domid}")
}

/// `/vm/<uuid>`.
pub fn vm_path(domid: DomId) -> String {
    format!("/vm/00000000-0000-0000-0000-{domid:012x}")
}

/// Every node of `d`'s tree, parents first.
pub fn domain_tree(d: &NewDomain) -> Vec<Node> {
    let dom = dom_path(d.domid);
    let vm = vm_path(d.domid);
    let id = d.domid;
    let ro = || Some(alloc::vec![String::from("n0"), format!("r{id}")]);
    let rw = || Some(alloc::vec![format!("n{id}")]);
    let node = |path: String, value: String, perms| Node { path, value, perms };
    let mut nodes = Vec::new();
    nodes.push(node(dom.clone(), String::new(), ro()));
    nodes.push(node(vm.clone(), String::new(), ro()));
    nodes.push(node(format!("{dom}/vm"), vm.clone(), None));
    for dir in ["device", "control"] {
        nodes.push(node(format!("{dom}/{dir}"), String::new(), ro()));
    }
    for key in [
        "control/shutdown",
        "control/feature-poweroff",
        "control/feature-reboot",
        "control/feature-suspend",
        "control/sysrq",
        "data",
        "drivers",
        "feature",
        "attr",
        "error",
    ] {
        nodes.push(node(format!("{dom}/{key}"), String::new(), rw()));
    }
    for key in [
        "platform-feature-multiprocessor-suspend",
        "platform-feature-xs_reset_watches",
    ] {
        nodes.push(node(format!("{dom}/control/{key}"), "1".into(), None));
    }
    nodes.push(node(format!("{vm}/uuid"), vm[4..].into(), None));
    nodes.push(node(format!("{vm}/name"), d.name.into(), None));
    nodes.push(node(format!("{dom}/name"), d.name.into(), None));
    let (store_gfn, store_port) = d.store;
    for (key, value) in [
        ("memory/static-max", format!("{}", d.max_memkb)),
        ("memory/target", format!("{}", d.target_memkb)),
        ("domid", format!("{id}")),
        ("store/port", format!("{store_port}")),
        ("store/ring-ref", format!("{store_gfn}")),
    ] {
        nodes.push(node(format!("{dom}/{key}"), value, None));
    }
    for cpu in 0..d.vcpus {
        let key = format!("{dom}/cpu/{cpu}/availability");
        nodes.push(node(key, "online".into(), None));
    }
    if let Some((gfn, port)) = d.console {
        for (key, value) in [
            ("ring-ref", format!("{gfn}")),
            ("port", format!("{port}")),
            ("type", "xenconsoled".into()),
            ("limit", format!("{XENCONSOLE_LIMIT}")),
            ("output", "pty".into()),
        ] {
            nodes.push(node(format!("{dom}/console/{key}"), value, None));
        }
    }
    nodes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain() -> NewDomain<'static> {
        NewDomain {
            domid: 3,
            name: "guest",
            max_memkb: 4104,
            target_memkb: 4096,
            vcpus: 2,
            store: (0x401, 2),
            console: Some((0x400, 1)),
        }
    }

    #[test]
    fn the_tree_has_libxl_keys_and_permissions() {
        let nodes = domain_tree(&domain());
        let get = |p: &str| nodes.iter().find(|n| n.path == p).unwrap();
        assert_eq!(get("/local/domain/3/name").value, "guest");
        assert_eq!(get("/local/domain/3/domid").value, "3");
        assert_eq!(get("/local/domain/3/memory/target").value, "4096");
        assert_eq!(get("/local/domain/3/console/port").value, "1");
        assert_eq!(get("/local/domain/3/console/ring-ref").value, "1024");
        assert_eq!(get("/local/domain/3/cpu/1/availability").value, "online");
        let home = get("/local/domain/3").perms.clone().unwrap();
        assert_eq!(home, ["n0", "r3"]);
        let shutdown = get("/local/domain/3/control/shutdown").perms.clone();
        assert_eq!(
            shutdown.unwrap()[0],
            "n3",
            "the guest owns control/shutdown"
        );
        let vm = get("/local/domain/3/vm").value.clone();
        assert_eq!(get(&format!("{vm}/name")).value, "guest");
        // Parents come before their children's permissions matter.
        let pos = |p: &str| nodes.iter().position(|n| n.path == p).unwrap();
        assert!(pos("/local/domain/3") < pos("/local/domain/3/control/shutdown"));
        assert!(pos("/local/domain/3/control") < pos("/local/domain/3/control/shutdown"));
    }
}
