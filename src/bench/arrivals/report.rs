//! The arrivals run's report: what arrived, what was lost, the latency
//! before and during the storm, and the CPU each arrival (and departure)
//! cost.

use std::time::Duration;

use super::{End, Plan, Tally};
use crate::bench::report::Report;
use crate::bench::stats::Histogram;
use crate::bench::system;

pub(super) fn report(
    plan: &Plan,
    t: &Tally,
    joins_expected: u64,
    leaves_expected: u64,
    end: &End,
) -> Report {
    let pace = match plan.rate {
        0 => "one after another".to_string(),
        r => format!("{r}/s"),
    };
    let room = plan
        .room
        .as_ref()
        .map_or("the default room".to_string(), |r| {
            format!("room {}", r.name)
        });
    let mut r = Report::new(
        "arrivals",
        format!(
            "chat bench arrivals: {} arrivals {pace} into {room}, {} present, {} talkers at {} msg/s, {} threads",
            plan.arrivals, plan.present, plan.talkers, plan.chat_rate, plan.threads
        ),
    );
    r.count("arrivals", "arrivals", plan.arrivals as u64);
    r.count(
        "rate",
        "arrival rate asked (0: one after another)",
        plan.rate,
    );
    r.count("present", "members present before", plan.present as u64);
    r.count("talkers", "talkers", plan.talkers as u64);
    r.count("chat_rate", "group messages/s asked", plan.chat_rate);
    let storm = end.storm.as_secs_f64();
    r.real("storm_s", "storm lasted", storm, 3, "s");
    let per_s = if storm > 0.0 {
        plan.arrivals as f64 / storm
    } else {
        0.0
    };
    r.real("arrivals_per_s", "arrivals/s held", per_s, 1, "");
    r.count("joins_expected", "joins expected", joins_expected);
    r.count("joins_received", "joins received", t.joins);
    r.count(
        "joins_missing",
        "joins missing",
        joins_expected.saturating_sub(t.joins),
    );
    r.count(
        "joins_extra",
        "joins extra",
        t.joins.saturating_sub(joins_expected),
    );
    if plan.leave {
        r.count("leaves_expected", "leaves expected", leaves_expected);
        r.count("leaves_received", "leaves received", t.leaves);
        r.count(
            "leaves_missing",
            "leaves missing",
            leaves_expected.saturating_sub(t.leaves),
        );
        r.count(
            "leaves_extra",
            "leaves extra",
            t.leaves.saturating_sub(leaves_expected),
        );
    }
    r.count("group_received", "group deliveries received", t.received);
    r.count(
        "group_missing",
        "group deliveries missing",
        t.gaps + t.unfinished,
    );
    r.count(
        "group_out_of_order",
        "group duplicated or reordered",
        t.out_of_order,
    );
    r.count("corrupt", "corrupted", t.corrupt);
    let none = "not measured (no group deliveries: add --talkers)";
    latency_rows(
        &mut r,
        &t.quiet,
        [
            "quiet_samples",
            "quiet_p50_ms",
            "quiet_p99_ms",
            "quiet_max_ms",
        ],
        [
            "group deliveries before",
            "group latency p50 before",
            "group latency p99 before",
            "group latency max before",
        ],
    );
    latency_rows(
        &mut r,
        &t.storm,
        [
            "storm_samples",
            "storm_p50_ms",
            "storm_p99_ms",
            "storm_max_ms",
        ],
        [
            "group deliveries during",
            "group latency p50 during",
            "group latency p99 during",
            "group latency max during",
        ],
    );
    let (quiet_p99, storm_p99) = (t.quiet.quantile(0.99), t.storm.quantile(0.99));
    if t.quiet.count() > 0 && t.storm.count() > 0 && quiet_p99 > 0 {
        r.real(
            "p99_ratio",
            "p99 during / before",
            storm_p99 as f64 / quiet_p99 as f64,
            2,
            "",
        );
    } else {
        r.unmeasured("p99_ratio", "p99 during / before", none);
    }
    r.real(
        "bench_cpu_s",
        "bench CPU during",
        end.own_cpu.as_secs_f64(),
        3,
        "s",
    );
    let per_arrival = |cpu: Duration| cpu.as_secs_f64() * 1e3 / plan.arrivals as f64;
    // Every member reads every join: the bench's share tells whether it,
    // not the server, held the arrival rate.
    r.real(
        "bench_cpu_ms_per_arrival",
        "bench CPU per arrival",
        per_arrival(end.own_cpu),
        4,
        "ms",
    );
    match end.server_cpu {
        Some(cpu) if cpu >= system::MIN_PROC_CPU => {
            r.real(
                "server_cpu_s",
                "server CPU during",
                cpu.as_secs_f64(),
                2,
                "s",
            );
            r.real(
                "server_cpu_ms_per_arrival",
                "server CPU per arrival",
                per_arrival(cpu),
                4,
                "ms",
            );
        }
        Some(_) => {
            r.unmeasured(
                "server_cpu_s",
                "server CPU during",
                system::TOO_SHORT_FOR_PROC_CPU,
            );
            r.unmeasured(
                "server_cpu_ms_per_arrival",
                "server CPU per arrival",
                "too short to measure",
            );
        }
        None => r.unmeasured(
            "server_cpu_ms_per_arrival",
            "server CPU per arrival",
            "not measured (add --server-pid PID)",
        ),
    }
    if let Some((took, own, server)) = end.departures {
        let secs = took.as_secs_f64();
        let rate = if secs > 0.0 {
            plan.arrivals as f64 / secs
        } else {
            0.0
        };
        r.real("departures_per_s", "departures/s", rate, 1, "");
        r.real(
            "bench_cpu_ms_per_departure",
            "bench CPU per departure",
            per_arrival(own),
            4,
            "ms",
        );
        match server {
            Some(cpu) if cpu >= system::MIN_PROC_CPU => r.real(
                "server_cpu_ms_per_departure",
                "server CPU per departure",
                per_arrival(cpu),
                4,
                "ms",
            ),
            Some(_) => r.unmeasured(
                "server_cpu_ms_per_departure",
                "server CPU per departure",
                "too short to measure",
            ),
            None => r.unmeasured(
                "server_cpu_ms_per_departure",
                "server CPU per departure",
                "not measured (add --server-pid PID)",
            ),
        }
    }
    r
}

/// How many samples a histogram holds, and its p50, p99 and maximum.
fn latency_rows(r: &mut Report, h: &Histogram, keys: [&'static str; 4], labels: [&'static str; 4]) {
    r.count(keys[0], labels[0], h.count());
    let ms = |ns: u64| ns as f64 / 1e6;
    let figures = [h.quantile(0.5), h.quantile(0.99), h.max()];
    for ((key, label), ns) in keys[1..].iter().zip(&labels[1..]).zip(figures) {
        match h.count() {
            0 => r.unmeasured(
                key,
                label,
                "not measured (no group deliveries: add --talkers)",
            ),
            _ => r.real(key, label, ms(ns), 3, "ms"),
        }
    }
}
