//! byol's parameter names against torchvision's ResNet-18 names.
//!
//! | byol | torchvision |
//! |---|---|
//! | `stem.conv.weight` | `conv1.weight` |
//! | `stem.norm.{weight,bias,running_mean,running_var}` | `bn1.*` |
//! | `layerS.B.conv1.weight`, `layerS.B.conv2.weight` | the same |
//! | `layerS.B.norm1.*`, `layerS.B.norm2.*` | `layerS.B.bn1.*`, `layerS.B.bn2.*` |
//! | `layerS.B.shortcut.conv.weight` | `layerS.B.downsample.0.weight` |
//! | `layerS.B.shortcut.norm.*` | `layerS.B.downsample.1.*` |
//!
//! Layouts agree as they are (convolutions [out, in, kh, kw], linear [out, in]), so only names
//! change. Head names (`projector.*`, `predictor.*`) have no torchvision counterpart and stay.

/// (byol, torchvision) name pieces; each is matched as a whole dot-separated run.
const PIECES: [(&str, &str); 6] = [
    ("stem.conv", "conv1"),
    ("stem.norm", "bn1"),
    ("shortcut.conv", "downsample.0"),
    ("shortcut.norm", "downsample.1"),
    ("norm1", "bn1"),
    ("norm2", "bn2"),
];

/// Replaces the first of `pairs`' `from` pieces found in `name` as whole dot-separated parts.
fn rename(name: &str, pairs: impl Iterator<Item = (&'static str, &'static str)>) -> String {
    let dotted = format!(".{name}.");
    for (from, to) in pairs {
        let piece = format!(".{from}.");
        if let Some(at) = dotted.find(&piece) {
            let out = format!("{}.{to}.{}", &dotted[..at], &dotted[at + piece.len()..]);
            return out.trim_matches('.').to_string();
        }
    }
    name.to_string()
}

/// Whether `name` (byol's) belongs to the encoder rather than to a head.
pub fn is_encoder(name: &str) -> bool {
    name.starts_with("stem.") || name.starts_with("layer")
}

/// torchvision's name for byol's parameter or statistic `name`.
pub fn to_torchvision(name: &str) -> String {
    if !is_encoder(name) {
        return name.to_string();
    }
    rename(name, PIECES.into_iter())
}

/// byol's name for torchvision's `name` (the inverse of [`to_torchvision`] on encoder names).
pub fn from_torchvision(name: &str) -> String {
    if !(name.starts_with("conv1.") || name.starts_with("bn1.") || name.starts_with("layer")) {
        return name.to_string();
    }
    // Inside a block, `bn1` is the block's first norm; at the top level it is the stem's.
    let top = !name.starts_with("layer");
    rename(
        name,
        PIECES
            .into_iter()
            .filter(|(ours, _)| top == ours.starts_with("stem."))
            .map(|(ours, theirs)| (theirs, ours)),
    )
}
