//! Everything that can go wrong when loading, generating or rendering navigation data.

use std::path::PathBuf;

use thiserror::Error;

/// An error of the navigation environment. Every variant names the file, route or field at fault.
#[derive(Debug, Error)]
pub enum NavError {
    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A JSON file is not valid JSON.
    #[error("{path}: invalid JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A route (or the route file itself) does not follow the `route_infos.json` schema.
    #[error("{path}: {route}: field `{field}`: {problem}")]
    Route {
        path: PathBuf,
        route: String,
        field: String,
        problem: String,
    },
    /// The GPS-to-panorama pickle cannot be read.
    #[error("{path}: byte {offset}: {problem}")]
    Pickle {
        path: PathBuf,
        offset: usize,
        problem: String,
    },
    /// No mapped panorama lies within the mapping radius of a route point (the reference would
    /// call the online Google API here; this project never uses the network).
    #[error(
        "{route}: {point} ({lat}, {lng}) has no mapped panorama within {radius_m} m{}",
        nearest_m.map(|d| format!(" (nearest is {d:.1} m away)")).unwrap_or_default()
    )]
    NoPanorama {
        route: String,
        point: String,
        lat: f64,
        lng: f64,
        radius_m: f64,
        nearest_m: Option<f64>,
    },
    /// A panorama named by the mapping is missing or unusable.
    #[error("{path}: panorama {pano_id}: {problem}")]
    Panorama {
        path: PathBuf,
        pano_id: String,
        problem: String,
    },
    /// An image could not be decoded or encoded.
    #[error("{path}: {source}")]
    Image {
        path: PathBuf,
        #[source]
        source: image::ImageError,
    },
    /// A request that does not fit the data (a route index past the end, an empty route set …).
    #[error("{0}")]
    Invalid(String),
}

impl NavError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        NavError::Io {
            path: path.into(),
            source,
        }
    }
}
