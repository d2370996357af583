//! Which weights the evaluator runs, and Banyan's own network compiled into the binary.
//!
//! The built-in network is trained by the project's own pipeline (`scripts/train`: Stockfish
//! labels, `banyan train`, export to an Lc0 `.pb.gz`) and committed as `nn/net/banyan.pb.gz`;
//! `nn/net/README.md` records how it was made and how it plays. It is the default (`<default>`,
//! or `<builtin>` by name), as it out-plays the heuristic at equal time; `<heuristic>` selects
//! the heuristic.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

/// The built-in network's Lc0 `.pb.gz` bytes.
pub const NETWORK: &[u8] = include_bytes!("../net/banyan.pb.gz");

/// The name under which the built-in network describes itself.
pub const NETWORK_NAME: &str = "banyan (built in)";

/// The policy temperature the built-in network plays best at. Its policy was trained on soft
/// targets (the best move blended with a softmax over Stockfish's MultiPV lines), so it needs
/// none of the flattening that Lc0's 1.359 gives nets trained on sharper targets: at 800 nodes
/// a move, 1.0 beat 1.359 by about +100 Elo (`nn/net/README.md`).
pub const NETWORK_POLICY_TEMPERATURE: f32 = 1.0;

/// What the evaluator runs, as the `WeightsFile` option and `--weights` flags name it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Weights {
    /// The built-in network (`<builtin>`): the default, as the evaluator that plays best at
    /// equal time with no file.
    #[default]
    Builtin,
    /// The hand-written heuristic evaluator (`<heuristic>`): no network at all.
    Heuristic,
    /// An Lc0 `.pb.gz` file.
    File(PathBuf),
}

impl Weights {
    /// The option text of the built-in network.
    pub const BUILTIN: &str = "<builtin>";
    /// The option text of whichever evaluator is the default.
    pub const DEFAULT: &str = "<default>";
    /// The option text of the heuristic evaluator.
    pub const HEURISTIC: &str = "<heuristic>";

    /// Reads an option value: `<builtin>` is the built-in network, `<heuristic>` the
    /// heuristic, `<default>` (or nothing) the default one, anything else a path.
    pub fn parse(text: &str) -> Weights {
        match text.trim() {
            "" | Weights::DEFAULT => Weights::default(),
            Weights::BUILTIN => Weights::Builtin,
            Weights::HEURISTIC => Weights::Heuristic,
            path => Weights::File(PathBuf::from(path)),
        }
    }

    /// The policy temperature these weights play with unless one is set: the built-in
    /// network's own, otherwise Lc0's default.
    pub fn policy_temperature(&self) -> f32 {
        match self {
            Weights::Builtin => NETWORK_POLICY_TEMPERATURE,
            Weights::Heuristic | Weights::File(_) => crate::priors::DEFAULT_POLICY_TEMPERATURE,
        }
    }

    /// The file, when the weights are one.
    pub fn file(&self) -> Option<&Path> {
        match self {
            Weights::File(path) => Some(path),
            _ => None,
        }
    }

    /// The option text, as [`Weights::parse`] reads it back.
    pub fn to_os_string(&self) -> OsString {
        match self {
            Weights::File(path) => path.as_os_str().to_owned(), // also a non-UTF-8 path
            named => named.to_string().into(),
        }
    }
}

impl From<&std::ffi::OsStr> for Weights {
    fn from(text: &std::ffi::OsStr) -> Weights {
        match text.to_str() {
            Some(text) => Weights::parse(text),
            None => Weights::File(PathBuf::from(text)),
        }
    }
}

impl std::str::FromStr for Weights {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Weights, Self::Err> {
        Ok(Weights::parse(text))
    }
}

impl fmt::Display for Weights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Weights::Builtin => f.write_str(Weights::BUILTIN),
            Weights::Heuristic => f.write_str(Weights::HEURISTIC),
            Weights::File(path) => write!(f, "{}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_texts_round_trip() {
        for weights in [
            Weights::Builtin,
            Weights::Heuristic,
            Weights::File("/nets/a b.pb.gz".into()),
        ] {
            assert_eq!(Weights::from(weights.to_os_string().as_os_str()), weights);
            assert_eq!(Weights::parse(&weights.to_string()), weights);
        }
        assert_eq!(Weights::parse(""), Weights::default());
        assert_eq!(Weights::parse("<default>"), Weights::default());
        assert_eq!(Weights::parse("  <heuristic> "), Weights::Heuristic);
    }

    #[test]
    fn the_builtin_network_decodes_with_a_conv_policy_and_wdl_head() {
        let weights = crate::weights::from_gzip_bytes(NETWORK).expect("the built-in network");
        assert!(weights.value.is_wdl(), "{}", weights.describe());
        assert!(
            matches!(
                weights.policy,
                crate::weights::PolicyHead::Convolution { .. }
            ),
            "{}",
            weights.describe()
        );
    }
}
