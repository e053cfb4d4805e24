//! The GPS → panorama mapping and offline relocation: a point snaps to the nearest mapped
//! panorama location within `MAPPING_RADIUS` = 20 m (haversine), as the reference's
//! `_relocate_geocode_by_source_offline` does. An exact key match wins outright; among equally
//! near locations the first in the file wins (numpy's `argmin`).

use std::path::Path;

use super::error::NavError;
use super::geo::{EARTH_RADIUS_M, LatLng, haversine_m};
use super::pickle::{self, Mapping};

/// The reference's `MAPPING_RADIUS` in metres.
pub const MAPPING_RADIUS_M: f64 = 20.0;

/// A snapped point: the mapped location and its panorama id.
#[derive(Clone, Debug, PartialEq)]
pub struct Snap<'a> {
    pub geocode: LatLng,
    pub pano_id: &'a str,
}

/// The mapping, with an index sorted by latitude for fast nearest-neighbour queries.
#[derive(Clone, Debug)]
pub struct PanoMap {
    entries: Mapping,
    /// Entry indices sorted by latitude.
    by_lat: Vec<usize>,
}

impl PanoMap {
    pub fn new(entries: Mapping) -> Self {
        let mut by_lat: Vec<usize> = (0..entries.len()).collect();
        by_lat.sort_by(|&a, &b| entries[a].0.0.total_cmp(&entries[b].0.0));
        PanoMap { entries, by_lat }
    }

    /// Reads `gps_pano_mapping.pkl`.
    pub fn load(path: &Path) -> Result<Self, NavError> {
        let bytes = std::fs::read(path).map_err(|e| NavError::io(path, e))?;
        let entries = pickle::read_mapping(&bytes).map_err(|e| NavError::Pickle {
            path: path.into(),
            offset: e.offset,
            problem: e.problem,
        })?;
        if let Some(((lat, lng), _)) = entries
            .iter()
            .find(|(k, _)| !LatLng::new(k.0, k.1).is_valid())
        {
            return Err(NavError::Pickle {
                path: path.into(),
                offset: bytes.len(),
                problem: format!("key ({lat}, {lng}) is not a valid coordinate"),
            });
        }
        Ok(PanoMap::new(entries))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every `(location, pano_id)` in file order.
    pub fn entries(&self) -> &Mapping {
        &self.entries
    }

    /// The nearest mapped location and its distance, if any lies within `radius_m`.
    fn nearest_within(&self, p: LatLng, radius_m: f64) -> (Option<usize>, Option<f64>) {
        // Any point within `radius_m` differs in latitude by at most radius/R radians.
        let band = (radius_m / EARTH_RADIUS_M).to_degrees() * 1.000_001;
        let lo = self
            .by_lat
            .partition_point(|&i| self.entries[i].0.0 < p.lat - band);
        let mut best: Option<(f64, usize)> = None;
        for &i in self.by_lat[lo..]
            .iter()
            .take_while(|&&i| self.entries[i].0.0 <= p.lat + band)
        {
            let (lat, lng) = self.entries[i].0;
            let d = haversine_m(p, LatLng::new(lat, lng));
            if best.is_none_or(|(bd, bi)| d < bd || (d == bd && i < bi)) {
                best = Some((d, i));
            }
        }
        match best {
            Some((d, i)) if d < radius_m => (Some(i), Some(d)),
            Some((d, _)) => (None, Some(d)),
            None => (None, None),
        }
    }

    /// Snaps `p` to its panorama: the exact key if mapped, else the nearest location within
    /// 20 m, else `None`.
    pub fn relocate(&self, p: LatLng) -> Option<Snap<'_>> {
        let exact = self.by_lat[self
            .by_lat
            .partition_point(|&i| self.entries[i].0.0 < p.lat)..]
            .iter()
            .take_while(|&&i| self.entries[i].0.0 == p.lat)
            .find(|&&i| self.entries[i].0.1 == p.lng);
        let i = match exact {
            Some(&i) => i,
            None => self.nearest_within(p, MAPPING_RADIUS_M).0?,
        };
        let ((lat, lng), pano) = &self.entries[i];
        Some(Snap {
            geocode: LatLng::new(*lat, *lng),
            pano_id: pano,
        })
    }

    /// Like [`relocate`](Self::relocate), but a miss is an error naming the route and the point.
    pub fn relocate_or_err(
        &self,
        p: LatLng,
        route: &str,
        point: &str,
    ) -> Result<Snap<'_>, NavError> {
        self.relocate(p).ok_or_else(|| NavError::NoPanorama {
            route: route.to_string(),
            point: point.to_string(),
            lat: p.lat,
            lng: p.lng,
            radius_m: MAPPING_RADIUS_M,
            nearest_m: self.nearest_within(p, 1000.0).1,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> PanoMap {
        PanoMap::new(vec![
            ((40.0, -74.0), "a".into()),
            ((40.0001, -74.0), "b".into()),
            ((40.0, -74.0), "dup".into()),
            ((40.01, -74.0), "far".into()),
        ])
    }

    #[test]
    fn snaps_to_nearest_within_radius() {
        let m = map();
        assert_eq!(m.relocate(LatLng::new(40.0, -74.0)).unwrap().pano_id, "a");
        // 11.1 m north of "b" is closer to "b" (0.0001° ≈ 11.1 m).
        assert_eq!(
            m.relocate(LatLng::new(40.00011, -74.0)).unwrap().pano_id,
            "b"
        );
        assert_eq!(
            m.relocate(LatLng::new(40.00002, -74.0)).unwrap().pano_id,
            "a"
        );
        assert!(m.relocate(LatLng::new(40.005, -74.0)).is_none());
        let err = m
            .relocate_or_err(
                LatLng::new(40.005, -74.0),
                "route 0 (A → B)",
                "intersection 1",
            )
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("route 0 (A → B): intersection 1 (40.005, -74)"),
            "{msg}"
        );
        assert!(msg.contains("nearest is 544"), "{msg}");
    }

    #[test]
    fn brute_force_agrees() {
        let mut rng = crate::Rng::new(5);
        let entries: Mapping = (0..300)
            .map(|i| {
                (
                    (
                        40.0 + rng.unit_f64() * 0.003,
                        -74.0 + rng.unit_f64() * 0.003,
                    ),
                    format!("p{i}"),
                )
            })
            .collect();
        let m = PanoMap::new(entries.clone());
        for _ in 0..200 {
            let p = LatLng::new(
                40.0 + rng.unit_f64() * 0.003,
                -74.0 + rng.unit_f64() * 0.003,
            );
            let brute = entries
                .iter()
                .map(|((a, b), id)| (haversine_m(p, LatLng::new(*a, *b)), id))
                .fold(None, |best: Option<(f64, &String)>, x| match best {
                    Some(b) if b.0 <= x.0 => Some(b),
                    _ => Some(x),
                })
                .filter(|b| b.0 < MAPPING_RADIUS_M)
                .map(|b| b.1.as_str());
            assert_eq!(m.relocate(p).map(|s| s.pano_id), brute);
        }
    }
}
