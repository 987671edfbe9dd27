//! A study across seeds: per variant the spread of every final number, and its linear accuracy's
//! paired difference to Random and to BYOL (seed by seed) with a 95% interval; and the markdown
//! table that says which differences the seeds separate.

use super::stats::{PairedDifference, Spread};
use super::VariantResult;
use serde::Serialize;

/// One variant across the study's seeds (accuracies in [0, 1]).
#[derive(Serialize, Clone, Debug)]
pub struct VariantSummary {
    pub slug: String,
    pub name: String,
    /// Seeds with a result for this variant.
    pub seeds: usize,
    pub accuracy: Option<Spread>,
    pub knn_accuracy: Option<Spread>,
    pub cos_pos: Option<Spread>,
    pub cos_neg: Option<Spread>,
    pub output_std: Option<Spread>,
    pub output_rank: Option<Spread>,
    pub embedding_rank: Option<Spread>,
    /// Linear accuracy minus Random's, paired by seed (None with fewer than two seeds, or for
    /// Random itself, or when the study has no Random row).
    pub accuracy_vs_random: Option<PairedDifference>,
    /// Linear accuracy minus BYOL's, paired by seed.
    pub accuracy_vs_byol: Option<PairedDifference>,
}

/// Summaries of `first` (the first seed's runs) and `later` (the other seeds', same order).
pub fn summarize(first: &[VariantResult], later: &[Vec<VariantResult>]) -> Vec<VariantSummary> {
    let all: Vec<&[VariantResult]> = std::iter::once(first)
        .chain(later.iter().map(|v| v.as_slice()))
        .collect();
    let runs_of = |slug: &str| -> Vec<&VariantResult> {
        all.iter()
            .filter_map(|seed| seed.iter().find(|r| r.slug == slug))
            .collect()
    };
    let accuracy_by_seed = |slug: &str| -> Vec<(u64, f64)> {
        runs_of(slug)
            .iter()
            .filter_map(|r| r.final_accuracy.map(|a| (r.seed, a)))
            .collect()
    };
    let paired = |mine: &[(u64, f64)], slug: &str, own: &str| -> Option<PairedDifference> {
        if own == slug {
            return None;
        }
        let other = accuracy_by_seed(slug);
        let pairs: Vec<(f64, f64)> = mine
            .iter()
            .filter_map(|(s, a)| other.iter().find(|(t, _)| t == s).map(|(_, b)| (*a, *b)))
            .collect();
        PairedDifference::of(&pairs)
    };
    first
        .iter()
        .map(|v| {
            let runs = runs_of(&v.slug);
            let spread = |f: fn(&VariantResult) -> Option<f64>| {
                Spread::of(&runs.iter().filter_map(|r| f(r)).collect::<Vec<_>>())
            };
            let mine = accuracy_by_seed(&v.slug);
            VariantSummary {
                slug: v.slug.clone(),
                name: v.name.clone(),
                seeds: runs.len(),
                accuracy: spread(|r| r.final_accuracy),
                knn_accuracy: spread(|r| r.final_knn_accuracy),
                cos_pos: spread(|r| r.final_cos_pos),
                cos_neg: spread(|r| r.final_cos_neg),
                output_std: spread(|r| r.final_output_std),
                output_rank: spread(|r| r.final_output_rank),
                embedding_rank: spread(|r| r.final_embedding_rank),
                accuracy_vs_random: paired(&mine, "random", &v.slug),
                accuracy_vs_byol: paired(&mine, "byol", &v.slug),
            }
        })
        .collect()
}

/// The across-seeds table: mean ± sd (and each seed's value) per number, and the paired
/// differences in accuracy points with their 95% intervals.
pub fn seeds_table(summary: &[VariantSummary], seeds: &[u64]) -> String {
    let mut t = format!(
        "Across {} seeds ({}): mean ± sd, each seed's value in brackets; differences are paired by \
         seed, in accuracy points, with a 95% t interval (\"not separated\" where it includes 0).\n\n",
        seeds.len(),
        seeds
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    t.push_str(
        "| Name | Accuracy (%) | kNN accuracy (%) | vs Random | vs BYOL | cos+ | cos- | \
         Output std | Effective rank: output / embedding |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for v in summary {
        t.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} / {} |\n",
            v.name,
            spread_cell(&v.accuracy, 100.0, 1, true),
            spread_cell(&v.knn_accuracy, 100.0, 1, true),
            difference_cell(&v.accuracy_vs_random),
            difference_cell(&v.accuracy_vs_byol),
            spread_cell(&v.cos_pos, 1.0, 4, false),
            spread_cell(&v.cos_neg, 1.0, 4, false),
            spread_cell(&v.output_std, 1.0, 4, false),
            spread_cell(&v.output_rank, 1.0, 1, false),
            spread_cell(&v.embedding_rank, 1.0, 1, false),
        ));
    }
    t
}

fn spread_cell(s: &Option<Spread>, scale: f64, digits: usize, values: bool) -> String {
    let Some(s) = s else {
        return "-".into();
    };
    let mut cell = format!("{:.digits$} ± {:.digits$}", s.mean * scale, s.sd * scale);
    if values {
        let each: Vec<String> = s
            .values
            .iter()
            .map(|v| format!("{:.digits$}", v * scale))
            .collect();
        cell.push_str(&format!(" [{}]", each.join(", ")));
    }
    cell
}

fn difference_cell(d: &Option<PairedDifference>) -> String {
    let Some(d) = d else {
        return "-".into();
    };
    format!(
        "{:+.1} [{:+.1}, {:+.1}]{}",
        d.mean * 100.0,
        d.low * 100.0,
        d.high * 100.0,
        if d.separated() { "" } else { " not separated" }
    )
}
