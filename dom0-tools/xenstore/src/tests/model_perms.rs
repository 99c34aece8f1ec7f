//! Permissions against a model of Xen's rules: two guests act on their
//! own and each other's homes, setting permissions as they please; every
//! result matches the model, and a guest never reads a node of the
//! other's home unless the node's permissions grant it.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use proptest::prelude::*;

use super::{with_domains, Client};
use crate::path::{is_under, parent};
use crate::DomId;

const PATHS: [&str; 7] = [
    "/local/domain/1",
    "/local/domain/1/x",
    "/local/domain/1/x/y",
    "/local/domain/1/z",
    "/local/domain/2",
    "/local/domain/2/x",
    "/local/domain/2/x/y",
];

/// A permission entry: letter, domid.
type Entry = (char, DomId);

#[derive(Clone, Debug)]
enum Op {
    Read(DomId, usize),
    Write(DomId, usize),
    Mkdir(DomId, usize),
    Rm(DomId, usize),
    GetPerms(DomId, usize),
    SetPerms(DomId, usize, Vec<Entry>),
}

fn entry() -> impl Strategy<Value = Entry> {
    (
        prop::sample::select(alloc::vec!['n', 'r', 'w', 'b']),
        0u16..3,
    )
}

fn op() -> impl Strategy<Value = Op> {
    let d = 1u16..3;
    let p = 0..PATHS.len();
    prop_oneof![
        (d.clone(), p.clone()).prop_map(|(d, p)| Op::Read(d, p)),
        (d.clone(), p.clone()).prop_map(|(d, p)| Op::Write(d, p)),
        (d.clone(), p.clone()).prop_map(|(d, p)| Op::Mkdir(d, p)),
        (d.clone(), p.clone()).prop_map(|(d, p)| Op::Rm(d, p)),
        (d.clone(), p.clone()).prop_map(|(d, p)| Op::GetPerms(d, p)),
        (d, p, prop::collection::vec(entry(), 1..4)).prop_map(|(d, p, e)| Op::SetPerms(d, p, e)),
    ]
}

/// The model: path → (value, permission entries).
type Tree = BTreeMap<String, (String, Vec<Entry>)>;

/// Xen's `perm_for_conn` for an unprivileged `d`: (read, write, owner).
fn rights(e: &[Entry], d: DomId) -> (bool, bool, bool) {
    if e[0].1 == d {
        return (true, true, true);
    }
    let letter = e[1..].iter().find(|x| x.1 == d).unwrap_or(&e[0]).0;
    (
        matches!(letter, 'r' | 'b'),
        matches!(letter, 'w' | 'b'),
        false,
    )
}

#[derive(Clone, Copy)]
enum Need {
    Read,
    Write,
    Owner,
}

/// The node if `d` has `need`; missing nodes give ENOENT only when the
/// nearest ancestor grants (part of) the need.
fn check(
    t: &Tree,
    d: DomId,
    path: &str,
    need: Need,
) -> Result<Option<(String, Vec<Entry>)>, String> {
    if let Some(n) = t.get(path) {
        let (r, w, o) = rights(&n.1, d);
        let ok = match need {
            Need::Read => r,
            Need::Write => w,
            Need::Owner => w && o,
        };
        return if ok {
            Ok(Some(n.clone()))
        } else {
            Err("EACCES".into())
        };
    }
    let mut up = path;
    loop {
        up = parent(up);
        if let Some(n) = t.get(up) {
            let (r, w, o) = rights(&n.1, d);
            let ok = match need {
                Need::Read => r,
                Need::Write | Need::Owner => w || o,
            };
            return if ok { Ok(None) } else { Err("EACCES".into()) };
        }
    }
}

fn create(t: &mut Tree, d: DomId, path: &str, value: &str) {
    let mut chain = Vec::new();
    let mut p = String::from(path);
    while !t.contains_key(&p) {
        chain.push(p.clone());
        p = String::from(parent(&p));
    }
    let mut perms = t[&p].1.clone();
    perms[0].1 = d;
    for c in chain.into_iter().rev() {
        t.insert(c, (String::new(), perms.clone()));
    }
    t.get_mut(path).unwrap().0 = String::from(value);
}

/// Applies `op` to the model and returns the expected reply.
fn model_op(t: &mut Tree, op: &Op) -> Result<String, String> {
    match op {
        Op::Read(d, p) => check(t, *d, PATHS[*p], Need::Read)?
            .map(|n| n.0)
            .ok_or("ENOENT".into()),
        Op::GetPerms(d, p) => {
            let n = check(t, *d, PATHS[*p], Need::Read)?.ok_or(String::from("ENOENT"))?;
            Ok(n.1
                .iter()
                .map(|(l, id)| format!("{l}{id}"))
                .collect::<Vec<_>>()
                .join(" "))
        }
        Op::Write(d, p) | Op::Mkdir(d, p) => {
            let value = if matches!(op, Op::Write(..)) {
                Some(format!("by{d}"))
            } else {
                None
            };
            match (check(t, *d, PATHS[*p], Need::Write)?, value) {
                (None, v) => create(t, *d, PATHS[*p], v.as_deref().unwrap_or("")),
                (Some(_), Some(v)) => t.get_mut(PATHS[*p]).unwrap().0 = v,
                (Some(_), None) => {}
            }
            Ok(String::new())
        }
        Op::Rm(d, p) => {
            let path = PATHS[*p];
            match check(t, *d, path, Need::Write)? {
                Some(_) => t.retain(|k, _| !is_under(k, path)),
                None if !t.contains_key(parent(path)) => return Err("ENOENT".into()),
                None => {}
            }
            Ok(String::new())
        }
        Op::SetPerms(d, p, e) => {
            let n = check(t, *d, PATHS[*p], Need::Owner)?.ok_or(String::from("ENOENT"))?;
            if e[0].1 != n.1[0].1 {
                return Err("EPERM".into());
            }
            t.get_mut(PATHS[*p]).unwrap().1 = e.clone();
            Ok(String::new())
        }
    }
}

fn store_op(s: &mut crate::Store, c: &mut Client, op: &Op) -> Result<String, String> {
    match op {
        Op::Read(_, p) => c.read(s, 0, PATHS[*p]),
        Op::GetPerms(_, p) => c.get_perms(s, PATHS[*p]).map(|v| v.join(" ")),
        Op::Write(d, p) => c
            .write(s, 0, PATHS[*p], &format!("by{d}"))
            .map(|_| String::new()),
        Op::Mkdir(_, p) => c.mkdir(s, 0, PATHS[*p]).map(|_| String::new()),
        Op::Rm(_, p) => c.rm(s, 0, PATHS[*p]).map(|_| String::new()),
        Op::SetPerms(_, p, e) => {
            let e: Vec<String> = e.iter().map(|(l, id)| format!("{l}{id}")).collect();
            let e: Vec<&str> = e.iter().map(String::as_str).collect();
            c.set_perms(s, PATHS[*p], &e).map(|_| String::new())
        }
    }
}

fn actor(op: &Op) -> DomId {
    match op {
        Op::Read(d, _)
        | Op::Write(d, _)
        | Op::Mkdir(d, _)
        | Op::Rm(d, _)
        | Op::GetPerms(d, _)
        | Op::SetPerms(d, _, _) => *d,
    }
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let (mut s, _dom0, mut guests) = with_domains(&[1, 2]);
    let mut t = Tree::new();
    for (p, e) in [("/", 'n'), ("/local", 'n'), ("/local/domain", 'n')] {
        t.insert(p.into(), (String::new(), alloc::vec![(e, 0)]));
    }
    for d in [1u16, 2] {
        t.insert(
            format!("/local/domain/{d}"),
            (String::new(), alloc::vec![('n', d)]),
        );
    }
    for op in ops {
        let d = actor(op);
        let before = t.clone();
        let want = model_op(&mut t, op);
        let got = store_op(&mut s, &mut guests[usize::from(d) - 1], op);
        prop_assert_eq!(&got, &want, "{:?}", op);
        if let (Op::Read(_, p), Ok(_)) = (op, &got) {
            let node = &before[PATHS[*p]].1;
            prop_assert!(rights(node, d).0, "read without a grant");
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn permissions_follow_xens_rules(ops in prop::collection::vec(op(), 0..25)) {
        run(&ops)?;
    }
}
