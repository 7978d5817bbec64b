//! The findings-over-time chart as inline SVG: two polylines (new, resolved) over fixed
//! buckets. Numbers only: nothing host-supplied reaches the SVG.

use std::collections::BTreeMap;

pub const WIDTH: u64 = 840;
pub const HEIGHT: u64 = 200;
const LEFT: u64 = 40;
const BOTTOM: u64 = 20;

/// What the template draws.
pub struct Chart {
    pub width: u64,
    pub height: u64,
    /// `x,y x,y …` of the new findings' line.
    pub new_points: String,
    pub resolved_points: String,
    pub max: u64,
    pub new_total: u64,
    pub resolved_total: u64,
    /// The y of the axis and the top gridline.
    pub axis_y: u64,
    pub left: u64,
    pub right: u64,
    /// Day ticks: (x, label).
    pub ticks: Vec<(u64, String)>,
}

/// A chart of `buckets` buckets of `bucket_ms` starting at `start`.
pub fn chart(
    start: u64,
    bucket_ms: u64,
    buckets: u64,
    new: &BTreeMap<u64, u64>,
    resolved: &BTreeMap<u64, u64>,
) -> Chart {
    let bucket_ms = bucket_ms.max(1);
    let buckets = buckets.max(2);
    let series = |m: &BTreeMap<u64, u64>| -> Vec<u64> {
        (0..buckets)
            .map(|i| m.get(&(start + i * bucket_ms)).copied().unwrap_or(0))
            .collect()
    };
    let n = series(new);
    let r = series(resolved);
    let max = n.iter().chain(&r).copied().max().unwrap_or(0).max(1);
    let plot_w = WIDTH - LEFT - 10;
    let plot_h = HEIGHT - BOTTOM - 10;
    let x = |i: u64| LEFT + i * plot_w / (buckets - 1);
    let y = |v: u64| 10 + plot_h - v.min(max) * plot_h / max;
    let points = |s: &[u64]| {
        s.iter()
            .enumerate()
            .map(|(i, v)| format!("{},{}", x(i as u64), y(*v)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let per_day = (86_400_000 / bucket_ms).max(1);
    let ticks = (0..buckets)
        .step_by(usize::try_from(per_day).unwrap_or(24))
        .map(|i| {
            let label = crate::alerts::rfc3339(start + i * bucket_ms);
            (x(i), label.get(5..10).unwrap_or("").to_string())
        })
        .collect();
    Chart {
        width: WIDTH,
        height: HEIGHT,
        new_points: points(&n),
        resolved_points: points(&r),
        max,
        new_total: n.iter().sum(),
        resolved_total: r.iter().sum(),
        axis_y: 10 + plot_h,
        left: LEFT,
        right: LEFT + plot_w,
        ticks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_scale_to_the_maximum() {
        let new = BTreeMap::from([(0, 2), (10, 4)]);
        let c = chart(0, 10, 3, &new, &BTreeMap::new());
        assert_eq!(c.max, 4);
        assert_eq!(c.new_total, 6);
        let ys: Vec<&str> = c
            .new_points
            .split(' ')
            .filter_map(|p| p.split(',').nth(1))
            .collect();
        assert_eq!(ys, ["95", "10", "180"]);
    }
}
