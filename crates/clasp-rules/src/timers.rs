//! What the clock drives: intervals, schedules, the ends of delays, ramp steps, and when
//! the host should poll next.

use std::sync::Arc;
use std::time::Duration;

use crate::action::Firing;
use crate::engine::{Cascade, Engine};
use crate::io::Write;
use crate::trigger::Trigger;

/// The longest a schedule lets the host sleep (the wall clock may jump).
const SCHEDULE_RECHECK: Duration = Duration::from_secs(60);
const MINUTE_US: i128 = 60_000_000;

impl Engine {
    /// When [`Engine::poll`] should next be called (monotonic); a time not after the last
    /// one given means at once. `None`: nothing is due until an update comes. With a
    /// schedule, at most a minute ahead.
    pub fn next_deadline(&self) -> Option<Duration> {
        let now = self.now;
        if !self.out.is_empty() {
            return Some(now);
        }
        let mut best: Option<Duration> = None;
        let mut consider = |t: Duration| best = Some(best.map_or(t, |b| b.min(t)));
        for (rule, st) in self.set.rules.iter().zip(&self.state) {
            if !rule.enabled {
                continue;
            }
            match rule.trigger {
                Trigger::Interval { .. } => consider(st.next_interval.unwrap_or(now)),
                Trigger::Schedule { offset_minutes, .. } => match (self.wall, st.next_schedule) {
                    (Some((at, wall_us)), Some(local)) => {
                        let target = i128::from(local - offset_minutes) * MINUTE_US;
                        let wait = (target - i128::from(wall_us))
                            .clamp(0, SCHEDULE_RECHECK.as_micros() as i128);
                        consider(at.saturating_add(Duration::from_micros(wait as u64)));
                    }
                    (Some((at, _)), None) => consider(at.saturating_add(SCHEDULE_RECHECK)),
                    (None, _) => consider(now),
                },
                _ => {}
            }
        }
        if let Some((&(due, _), _)) = self.delays.first_key_value() {
            consider(due);
        }
        for r in self.ramps.values() {
            consider(r.due());
        }
        best
    }

    /// Fires the intervals and schedules that are due.
    pub(crate) fn timers(&mut self, now: Duration, wall_us: u64) {
        let minute = (wall_us / 60_000_000) as i64;
        for i in 0..self.set.rules.len() {
            let rule = Arc::clone(&self.set.rules[i]);
            if !rule.enabled {
                continue;
            }
            let st = &mut self.state[i];
            let due = match rule.trigger {
                Trigger::Interval { every } => {
                    let next = *st.next_interval.get_or_insert(now.saturating_add(every));
                    let due = now >= next;
                    if due {
                        // Late: the missed periods are skipped, not fired in a burst.
                        let behind = (now - next).as_nanos() / every.as_nanos().max(1);
                        let k = u32::try_from(behind + 1).unwrap_or(u32::MAX);
                        st.next_interval = Some(
                            next.checked_add(every.saturating_mul(k))
                                .unwrap_or(now.saturating_add(every)),
                        );
                    }
                    due
                }
                Trigger::Schedule {
                    cron,
                    offset_minutes,
                } => {
                    let local = minute + offset_minutes;
                    let went_back = st.last_minute.is_some_and(|m| local < m);
                    st.last_minute = Some(local);
                    match st.next_schedule {
                        Some(next) if !went_back => {
                            let due = local >= next;
                            if due {
                                st.next_schedule = cron.next_after(local);
                            }
                            due
                        }
                        // First poll, or the wall clock went back: from now on.
                        _ => {
                            st.next_schedule = cron.next_after(local);
                            false
                        }
                    }
                }
                _ => false,
            };
            if due {
                let mut cx = Cascade::default();
                self.fire(i, &rule, Firing::default(), &[], now, &mut cx);
                self.drain(now, &mut cx);
            }
        }
    }

    /// Carries on with the actions whose delay has ended, in the order they were due.
    pub(crate) fn wake_delays(&mut self, now: Duration) {
        while let Some(entry) = self.delays.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let p = entry.remove();
            let rule = Arc::clone(&self.set.rules[p.rule]);
            let mut cx = Cascade::default();
            self.run(p.rule, &rule, p.firing, p.next, p.chain, now, &mut cx);
            self.drain(now, &mut cx);
        }
    }

    /// Writes the ramps' steps that are due.
    pub(crate) fn step_ramps(&mut self, now: Duration) {
        let due: Vec<String> = self
            .ramps
            .iter()
            .filter(|(_, r)| r.due() <= now)
            .map(|(a, _)| a.clone())
            .collect();
        for address in due {
            // An earlier step's cascade may have stopped or replaced it.
            let Some(r) = self.ramps.get_mut(&address).filter(|r| r.due() <= now) else {
                continue;
            };
            let step = r.advance(now);
            let (rule, chain) = (r.rule, r.chain.clone());
            if step.done {
                self.ramps.remove(&address);
            }
            if let Some(value) = step.value {
                let mut cx = Cascade::default();
                self.emit(
                    rule,
                    Write::Set { address, value },
                    &chain,
                    now,
                    true,
                    &mut cx,
                );
                self.drain(now, &mut cx);
            }
        }
    }
}
