//! `top`: xentop for xen-core. Each frame is the difference of two
//! counter samples (`Request::Counters`) over the difference of the
//! hypervisor's system time they carry, so rates do not depend on this
//! process's clock or on the link's delay. `--batch` prints frames as
//! text (or JSON lines, `--json`); without it a ratatui view redraws
//! each frame until q or Esc.

use std::collections::BTreeMap;
use std::io::Write;
use std::thread;
use std::time::Duration;

use abi::svm_exit::code_name;
use mgmt::{CountersSnapshot, DomainSnapshot};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind};
use ratatui::layout::Constraint;
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Row, Table};
use serde::Serialize;

use crate::cli::TopArgs;
use crate::client::Client;
use crate::commands::print;
use crate::error::CliError;
use crate::output::table;
use crate::sched::counters;

/// One domain over one frame.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DomainRates {
    /// Its id.
    pub domid: u16,
    /// Its name.
    pub name: String,
    /// Its state.
    pub state: String,
    /// CPU time over the frame, percent of one pCPU.
    pub cpu_percent: f64,
    /// CPU time since it was created, ns.
    pub cpu_time_ns: u64,
    /// Memory it holds, KiB.
    pub memory_kib: u64,
    /// Its limit, KiB.
    pub max_memory_kib: u64,
    /// vCPUs.
    pub vcpus: usize,
    /// Credit weight.
    pub weight: u16,
    /// Credit cap, percent (0: none).
    pub cap: u16,
    /// VM exits per second.
    pub exits_per_s: f64,
    /// VM exits per second by SVM exit code (`0x7b`: IOIO, ...).
    pub exits_per_s_by_code: BTreeMap<String, f64>,
    /// The same by reason, the APM's name of the code
    /// ([`abi::svm_exit::code_name`]: `IOIO`, `VMMCALL`, ...); codes of one
    /// name (CR writes, exceptions) are added up.
    pub exits_per_s_by_reason: BTreeMap<String, f64>,
    /// Hypercalls per second.
    pub hypercalls_per_s: f64,
    /// Events per second (became pending for its vCPUs).
    pub events_per_s: f64,
}

/// One frame: every domain's rates between two samples.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Frame {
    /// The later sample's hypervisor system time, ns.
    pub system_time_ns: u64,
    /// Hypervisor system time between the samples, ns.
    pub interval_ns: u64,
    /// pCPUs.
    pub nr_pcpus: u32,
    /// The domains of the later sample, by domid.
    pub domains: Vec<DomainRates>,
}

/// The frame from `prev` to `now`. A domain new since `prev` shows its
/// totals but no rates yet.
pub fn frame(prev: &CountersSnapshot, now: &CountersSnapshot) -> Frame {
    let interval_ns = now.system_time_ns.saturating_sub(prev.system_time_ns);
    let per_s = |delta: u64| {
        if interval_ns == 0 {
            0.0
        } else {
            delta as f64 * 1e9 / interval_ns as f64
        }
    };
    let domains = now
        .domains
        .iter()
        .map(|d| {
            let before = prev.domains.iter().find(|p| p.domid == d.domid);
            let delta =
                |f: fn(&DomainSnapshot) -> u64| before.map_or(0, |b| f(d).saturating_sub(f(b)));
            let mut by_code = BTreeMap::new();
            let mut by_reason = BTreeMap::new();
            for &(code, n) in &d.exits_by_code {
                let was = before
                    .and_then(|b| b.exits_by_code.iter().find(|(c, _)| *c == code))
                    .map_or(if before.is_some() { 0 } else { n }, |(_, n)| *n);
                let rate = per_s(n.saturating_sub(was));
                by_code.insert(format!("{code:#x}"), rate);
                *by_reason.entry(code_name(code).to_string()).or_insert(0.0) += rate;
            }
            DomainRates {
                domid: d.domid,
                name: d.name.clone(),
                state: d.state.to_string(),
                cpu_percent: per_s(delta(DomainSnapshot::cpu_time_ns)) / 1e9 * 100.0,
                cpu_time_ns: d.cpu_time_ns(),
                memory_kib: d.memory_kib,
                max_memory_kib: d.max_memory_kib,
                vcpus: d.vcpus.len(),
                weight: d.weight,
                cap: d.cap,
                exits_per_s: per_s(delta(DomainSnapshot::exits)),
                exits_per_s_by_code: by_code,
                exits_per_s_by_reason: by_reason,
                hypercalls_per_s: per_s(delta(|d| d.hypercalls)),
                events_per_s: per_s(delta(DomainSnapshot::events)),
            }
        })
        .collect();
    Frame {
        system_time_ns: now.system_time_ns,
        interval_ns,
        nr_pcpus: now.nr_pcpus,
        domains,
    }
}

/// A column of the view: its heading and its width in the live view
/// (cells; wide enough for any value, which is never cut).
#[derive(Clone, Copy)]
struct Column {
    name: &'static str,
    width: u16,
}

const fn column(name: &'static str, width: u16) -> Column {
    Column { name, width }
}

/// The per-domain columns, in row order; the top exit reasons follow.
const COLUMNS: [Column; 13] = [
    column("NAME", 14),
    column("ID", 4),
    column("STATE", 9),
    column("CPU(sec)", 9),
    column("CPU(%)", 7),
    column("MEM(k)", 9),
    column("MAXMEM(k)", 10),
    column("VCPUS", 6),
    column("WEIGHT", 7),
    column("CAP", 4),
    column("EXITS/s", 8),
    column("HCALLS/s", 9),
    column("EVENTS/s", 9),
];

/// The live view's last column: it takes what is left, at least its width.
const TOP_EXITS: Column = column("TOP EXITS/s", 20);

/// The live view's columns, left to right.
fn live_columns() -> impl Iterator<Item = Column> {
    COLUMNS.into_iter().chain([TOP_EXITS])
}

/// The frame's rows, as text cells in [`COLUMNS`] order, then the top
/// exit reasons.
fn rows(f: &Frame) -> Vec<Vec<String>> {
    f.domains
        .iter()
        .map(|d| {
            let mut top: Vec<(&String, &f64)> = d.exits_per_s_by_reason.iter().collect();
            top.sort_by(|a, b| b.1.total_cmp(a.1));
            let reasons: Vec<String> = top
                .iter()
                .take(3)
                .filter(|(_, r)| **r > 0.0)
                .map(|(c, r)| format!("{c}:{r:.0}"))
                .collect();
            vec![
                d.name.clone(),
                d.domid.to_string(),
                d.state.clone(),
                format!("{:.1}", d.cpu_time_ns as f64 / 1e9),
                format!("{:.1}", d.cpu_percent),
                d.memory_kib.to_string(),
                d.max_memory_kib.to_string(),
                d.vcpus.to_string(),
                d.weight.to_string(),
                d.cap.to_string(),
                format!("{:.0}", d.exits_per_s),
                format!("{:.0}", d.hypercalls_per_s),
                format!("{:.0}", d.events_per_s),
                reasons.join(" "),
            ]
        })
        .collect()
}

/// The frame as `--batch` text.
pub fn frame_text(f: &Frame) -> String {
    let mut header: Vec<&str> = COLUMNS.iter().map(|c| c.name).collect();
    header.push("TOP EXITS/s (code:rate)");
    table(
        &header,
        rows(f).into_iter(),
        &[1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
    )
}

fn delay(args: &TopArgs) -> Result<Duration, CliError> {
    Duration::try_from_secs_f64(args.delay)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            CliError::Refused(mgmt::MgmtError::InvalidSchedParam {
                what: "delay".into(),
                reason: format!("{} is not a positive number of seconds", args.delay),
            })
        })
}

/// `top --batch [--json] [-n N] [-d SECS]`.
pub fn batch(client: &mut Client, args: &TopArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let delay = delay(args)?;
    let mut prev = counters(client, None)?;
    let mut printed = 0;
    while args.iterations.is_none_or(|n| printed < n) {
        thread::sleep(delay);
        let now = counters(client, None)?;
        let f = frame(&prev, &now);
        let text = if args.json {
            // Numbers, strings and maps of them always serialize.
            let mut line = serde_json::to_string(&f).unwrap_or_default();
            line.push('\n');
            line
        } else {
            format!("{}\n", frame_text(&f))
        };
        print(out, &text)?;
        prev = now;
        printed += 1;
    }
    Ok(())
}

/// `top`: the live view, until q or Esc (or `-n` frames).
pub fn live(client: &mut Client, args: &TopArgs) -> Result<(), CliError> {
    let delay = delay(args)?;
    let mut terminal =
        ratatui::try_init().map_err(|e| CliError::io("cannot set up the terminal", e))?;
    let result = live_loop(client, args, delay, &mut terminal);
    ratatui::restore();
    result
}

fn live_loop(
    client: &mut Client,
    args: &TopArgs,
    delay: Duration,
    terminal: &mut ratatui::DefaultTerminal,
) -> Result<(), CliError> {
    let mut prev = counters(client, None)?;
    let mut shown = 0;
    loop {
        if quit_within(delay)? {
            return Ok(());
        }
        let now = counters(client, None)?;
        let f = frame(&prev, &now);
        terminal
            .draw(|frame| frame.render_widget(view(&f, frame.area().width), frame.area()))
            .map_err(|e| CliError::io("cannot draw", e))?;
        prev = now;
        shown += 1;
        if args.iterations.is_some_and(|n| shown >= n) {
            return Ok(());
        }
    }
}

/// Waits up to `delay` for a key; true for q or Esc.
fn quit_within(delay: Duration) -> Result<bool, CliError> {
    let io = |e| CliError::io("cannot read the terminal", e);
    if !event::poll(delay).map_err(io)? {
        return Ok(false);
    }
    Ok(matches!(
        event::read().map_err(io)?,
        Event::Key(k) if k.kind == KeyEventKind::Press
            && matches!(k.code, KeyCode::Char('q') | KeyCode::Esc)
    ))
}

/// How many leading columns fit `width` cells (borders included) at their
/// full width. As xentop does, a narrow terminal loses columns on the
/// right; a squeezed column would cut a number short and show another
/// (65528 as 6552).
fn columns_that_fit(width: u16) -> usize {
    let inner = width.saturating_sub(2);
    let mut used = 0u16;
    live_columns()
        .take_while(|c| {
            let w = c.width;
            let with_gap = if used == 0 { w } else { w + 1 };
            used = used.saturating_add(with_gap);
            used <= inner
        })
        .count()
        .max(1)
}

/// The live view of `f` for a terminal `width` cells wide.
fn view(f: &Frame, width: u16) -> Table<'static> {
    let shown = columns_that_fit(width);
    let widths = COLUMNS
        .iter()
        .map(|c| Constraint::Length(c.width))
        .chain([Constraint::Min(TOP_EXITS.width)])
        .take(shown);
    let header: Vec<&str> = live_columns().take(shown).map(|c| c.name).collect();
    let title = format!(
        " xen-core top: {} domains, {} pCPU(s), interval {:.2} s (hypervisor time); q quits ",
        f.domains.len(),
        f.nr_pcpus,
        f.interval_ns as f64 / 1e9
    );
    let body = rows(f).into_iter().map(move |mut cells| {
        cells.truncate(shown);
        Row::new(cells)
    });
    Table::new(body, widths)
        .header(Row::new(header).style(Style::new().add_modifier(Modifier::REVERSED)))
        .block(Block::bordered().title(Line::from(title)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mgmt::sched::CreditPriority;
    use mgmt::{CpuSet, DomainState, VcpuCounters, VcpuState};

    fn snapshot(t: u64, cpu: u64, exits: u64, events: u64) -> CountersSnapshot {
        CountersSnapshot {
            system_time_ns: t,
            nr_pcpus: 1,
            domains: vec![DomainSnapshot {
                domid: 2,
                name: "hog".into(),
                state: DomainState::Runnable,
                memory_kib: 4096,
                max_memory_kib: 4096,
                weight: 512,
                cap: 25,
                vcpus: vec![VcpuCounters {
                    vcpu: 0,
                    pcpu: Some(0),
                    state: VcpuState::Runnable,
                    cpu_time_ns: cpu,
                    affinity: CpuSet::ALL,
                    priority: CreditPriority::Under,
                    credit: 5,
                    parked: false,
                    exits,
                    hypercalls: 0,
                    events,
                }],
                exits_by_code: vec![(0x7b, exits)],
                hypercalls: 10,
            }],
        }
    }

    #[test]
    fn rates_are_over_the_hypervisors_time() {
        let a = snapshot(1_000_000_000, 100_000_000, 50, 3);
        let b = snapshot(3_000_000_000, 600_000_000, 250, 7);
        let f = frame(&a, &b);
        assert_eq!(f.interval_ns, 2_000_000_000);
        let d = &f.domains[0];
        assert!((d.cpu_percent - 25.0).abs() < 1e-9);
        assert!((d.exits_per_s - 100.0).abs() < 1e-9);
        assert!((d.events_per_s - 2.0).abs() < 1e-9);
        assert_eq!(d.exits_per_s_by_code["0x7b"], 100.0);
        assert_eq!(d.exits_per_s_by_reason["IOIO"], 100.0);
        let text = frame_text(&f);
        let cols: Vec<&str> = text.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(&cols[..5], ["hog", "2", "runnable", "0.6", "25.0"]);
        assert_eq!(cols.last(), Some(&"IOIO:100"));
    }

    #[test]
    fn a_new_domain_has_no_rates_yet() {
        let a = CountersSnapshot {
            domains: vec![],
            ..snapshot(0, 0, 0, 0)
        };
        let f = frame(&a, &snapshot(1_000_000_000, 500_000_000, 10, 1));
        assert_eq!(f.domains[0].cpu_percent, 0.0);
        assert_eq!(f.domains[0].exits_per_s, 0.0);
    }

    #[test]
    fn exits_of_one_reason_add_up_under_its_name() {
        let with = |t, cr0, cr4| {
            let mut s = snapshot(t, 0, cr0 + cr4, 0);
            s.domains[0].exits_by_code = vec![(0x10, cr0), (0x14, cr4), (0x81, t / 1_000_000)];
            s
        };
        let f = frame(&with(0, 0, 0), &with(1_000_000_000, 30, 12));
        let d = &f.domains[0];
        assert_eq!(d.exits_per_s_by_reason["CR_WRITE"], 42.0);
        assert_eq!(d.exits_per_s_by_reason["VMMCALL"], 1000.0);
        let text = frame_text(&f);
        assert!(text.contains(" VMMCALL:1000 CR_WRITE:42"), "{text}");
    }

    /// The live view drawn `width` cells wide: its header and first row.
    fn drawn(f: &Frame, width: u16) -> (String, String) {
        let backend = ratatui::backend::TestBackend::new(width, 6);
        let mut terminal = ratatui::Terminal::new(backend).unwrap();
        terminal
            .draw(|frame| frame.render_widget(view(f, width), frame.area()))
            .unwrap();
        let buffer = terminal.backend().buffer();
        let line = |y| {
            (0..width)
                .map(|x| buffer[(x, y)].symbol())
                .collect::<String>()
        };
        (line(1), line(2))
    }

    /// Regression (found in tmux at 90 columns): the columns were
    /// squeezed to fit, so MEM(k) 65528 showed as 6552 and names were cut.
    /// A narrow terminal loses whole columns on the right instead.
    #[test]
    fn a_narrow_terminal_drops_columns_and_never_cuts_a_value() {
        let a = snapshot(1_000_000_000, 100_000_000, 50, 3);
        let mut b = snapshot(3_000_000_000, 600_000_000, 250, 7);
        b.domains[0].name = "a-long-name12".into();
        b.domains[0].memory_kib = 65528;
        let f = frame(&a, &b);
        let cells = &rows(&f)[0];
        for width in [40, 60, 90, 118, 150] {
            let (header, row) = drawn(&f, width);
            let shown = columns_that_fit(width);
            let names: Vec<&str> = live_columns().map(|c| c.name).collect();
            for (name, cell) in names.iter().zip(cells).take(shown) {
                assert!(header.contains(name), "{width}: {name} in {header:?}");
                assert!(row.contains(cell.as_str()), "{width}: {cell} in {row:?}");
            }
            for name in &names[shown..] {
                assert!(!header.contains(name), "{width}: {name} in {header:?}");
            }
        }
        assert_eq!(columns_that_fit(90), 10);
        assert_eq!(columns_that_fit(150), 14);
    }
}
