//! Geodesy as the reference uses it: geodesic and haversine distances, compass bearings, linear
//! interpolation of geocodes, and the 8-way direction words (LeslieTrue/SFTvsRL:
//! gym/virl/utils/geocode_utils.py).

/// The sphere radius of the reference's haversine (`6371.0` km).
pub const EARTH_RADIUS_M: f64 = 6_371_000.0;

/// The compass words of `turn_direction(x)` in the absolute action space, at 0°, 45°, … 315°.
pub const COMPASS: [&str; 8] = [
    "north",
    "northeast",
    "east",
    "southeast",
    "south",
    "southwest",
    "west",
    "northwest",
];

/// The spatial relations of a landmark to the walker, at 0°, 45°, … 315° clockwise from ahead.
pub const RELATIONS: [&str; 8] = [
    "front",
    "right front",
    "right",
    "right behind",
    "behind",
    "left behind",
    "left",
    "left front",
];

/// A point as latitude and longitude in degrees.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LatLng {
    pub lat: f64,
    pub lng: f64,
}

impl LatLng {
    pub fn new(lat: f64, lng: f64) -> Self {
        LatLng { lat, lng }
    }

    /// Whether both coordinates are finite and in range (latitude ±90°, longitude ±180°).
    pub fn is_valid(&self) -> bool {
        self.lat.is_finite()
            && self.lng.is_finite()
            && self.lat.abs() <= 90.0
            && self.lng.abs() <= 180.0
    }
}

/// Python's float `%`: the result has the sign of the divisor.
pub fn py_mod(a: f64, m: f64) -> f64 {
    let r = a % m;
    if r != 0.0 && (r < 0.0) != (m < 0.0) {
        r + m
    } else {
        r
    }
}

/// Great-circle distance in metres on the 6371 km sphere (`haversine_distance`, used to snap
/// points to panoramas).
pub fn haversine_m(a: LatLng, b: LatLng) -> f64 {
    let (lat1, lat2) = (a.lat.to_radians(), b.lat.to_radians());
    let dlat = lat2 - lat1;
    let dlon = (b.lng - a.lng).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * h.sqrt().min(1.0).asin() * EARTH_RADIUS_M
}

/// Distance in metres on the WGS-84 ellipsoid (geopy's `geodesic`, used for the rail's 5 m and
/// 8 m thresholds), by Vincenty's inverse formula. It agrees with geopy's Karney algorithm to well
/// under a millimetre at street scale; where it does not converge (nearly antipodal points) the
/// haversine distance is returned.
pub fn geodesic_m(p: LatLng, q: LatLng) -> f64 {
    const A: f64 = 6_378_137.0;
    const F: f64 = 1.0 / 298.257_223_563;
    const B: f64 = A * (1.0 - F);
    if p == q {
        return 0.0;
    }
    let l = (q.lng - p.lng).to_radians();
    let u1 = ((1.0 - F) * p.lat.to_radians().tan()).atan();
    let u2 = ((1.0 - F) * q.lat.to_radians().tan()).atan();
    let (sin_u1, cos_u1) = u1.sin_cos();
    let (sin_u2, cos_u2) = u2.sin_cos();
    let mut lambda = l;
    for _ in 0..200 {
        let (sin_l, cos_l) = lambda.sin_cos();
        let sin_sigma =
            ((cos_u2 * sin_l).powi(2) + (cos_u1 * sin_u2 - sin_u1 * cos_u2 * cos_l).powi(2)).sqrt();
        if sin_sigma == 0.0 {
            return 0.0;
        }
        let cos_sigma = sin_u1 * sin_u2 + cos_u1 * cos_u2 * cos_l;
        let sigma = sin_sigma.atan2(cos_sigma);
        let sin_alpha = cos_u1 * cos_u2 * sin_l / sin_sigma;
        let cos2_alpha = 1.0 - sin_alpha * sin_alpha;
        let cos_2sm = if cos2_alpha == 0.0 {
            0.0
        } else {
            cos_sigma - 2.0 * sin_u1 * sin_u2 / cos2_alpha
        };
        let c = F / 16.0 * cos2_alpha * (4.0 + F * (4.0 - 3.0 * cos2_alpha));
        let prev = lambda;
        lambda = l
            + (1.0 - c)
                * F
                * sin_alpha
                * (sigma
                    + c * sin_sigma * (cos_2sm + c * cos_sigma * (-1.0 + 2.0 * cos_2sm * cos_2sm)));
        if (lambda - prev).abs() < 1e-12 {
            let u_sq = cos2_alpha * (A * A - B * B) / (B * B);
            let a_k =
                1.0 + u_sq / 16384.0 * (4096.0 + u_sq * (-768.0 + u_sq * (320.0 - 175.0 * u_sq)));
            let b_k = u_sq / 1024.0 * (256.0 + u_sq * (-128.0 + u_sq * (74.0 - 47.0 * u_sq)));
            let delta_sigma = b_k
                * sin_sigma
                * (cos_2sm
                    + b_k / 4.0
                        * (cos_sigma * (-1.0 + 2.0 * cos_2sm * cos_2sm)
                            - b_k / 6.0
                                * cos_2sm
                                * (-3.0 + 4.0 * sin_sigma * sin_sigma)
                                * (-3.0 + 4.0 * cos_2sm * cos_2sm)));
            return B * a_k * (sigma - delta_sigma);
        }
    }
    haversine_m(p, q)
}

/// The initial compass bearing from `a` to `b` in `[0, 360)` (`calculate_heading_between_geocodes`).
pub fn bearing_deg(a: LatLng, b: LatLng) -> f64 {
    let (lat1, lat2) = (a.lat.to_radians(), b.lat.to_radians());
    let dlon = (b.lng - a.lng).to_radians();
    let x = dlon.sin() * lat2.cos();
    let y = lat1.cos() * lat2.sin() - lat1.sin() * lat2.cos() * dlon.cos();
    py_mod(x.atan2(y).to_degrees() + 360.0, 360.0)
}

/// Point `i` of `n` on the straight lat/lng line from `a` to `b` (`interpolate_geocodes`).
pub fn interpolate(a: LatLng, b: LatLng, i: u32, n: u32) -> LatLng {
    let t = i as f64 / n as f64;
    LatLng {
        lat: a.lat * (1.0 - t) + b.lat * t,
        lng: a.lng * (1.0 - t) + b.lng * t,
    }
}

/// The index of the heading in 0°, 45°, … 315° closest to `heading` (circular distance, first on
/// ties), as `select_argmin_heading_from_heading_list` with `DIRECTION_HEADING`.
fn nearest_octant(heading: f64) -> usize {
    let mut best = (f64::INFINITY, 0);
    for i in 0..8 {
        let mut d = (45.0 * i as f64 - heading).abs();
        if d > 180.0 {
            d = 360.0 - d;
        }
        if d < best.0 {
            best = (d, i);
        }
    }
    best.1
}

/// The compass word of a heading (`get_direction_abs_by_heading`).
pub fn compass_word(heading: f64) -> &'static str {
    COMPASS[nearest_octant(heading)]
}

/// Where something at compass bearing `heading_to` lies for a walker facing `agent_heading`
/// (`calculate_spatial_relationship_with_headings`).
pub fn spatial_relation(agent_heading: f64, heading_to: f64) -> &'static str {
    RELATIONS[nearest_octant(py_mod(heading_to - agent_heading, 360.0))]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_agree_at_street_scale() {
        // Two points of the V-IRL MoMA route, about 16 m apart.
        let a = LatLng::new(40.72416229223982, -73.99762612488824);
        let b = LatLng::new(40.72422891501083, -73.99779012634859);
        let (h, g) = (haversine_m(a, b), geodesic_m(a, b));
        assert!((15.0..17.0).contains(&h), "{h}");
        assert!((h - g).abs() < 0.1, "{h} vs {g}");
        assert_eq!(geodesic_m(a, a), 0.0);
        // One degree of latitude at the equator on WGS-84 (a textbook value).
        let d = geodesic_m(LatLng::new(0.0, 0.0), LatLng::new(1.0, 0.0));
        assert!((d - 110_574.389).abs() < 0.01, "{d}");
    }

    #[test]
    fn bearings_and_words() {
        let o = LatLng::new(40.0, -74.0);
        assert!((bearing_deg(o, LatLng::new(40.001, -74.0)) - 0.0).abs() < 1e-9);
        assert!((bearing_deg(o, LatLng::new(40.0, -73.999)) - 90.0).abs() < 0.01);
        assert!((bearing_deg(o, LatLng::new(39.999, -74.0)) - 180.0).abs() < 1e-9);
        assert_eq!(compass_word(298.0), "northwest");
        assert_eq!(compass_word(337.0), "northwest");
        assert_eq!(compass_word(338.0), "north");
        assert_eq!(compass_word(120.0), "southeast");
        assert_eq!(spatial_relation(298.0, 298.0 - 90.0), "left");
        assert_eq!(spatial_relation(10.0, 350.0), "front");
        assert_eq!(spatial_relation(0.0, 135.0), "right behind");
        assert_eq!(py_mod(-30.0, 360.0), 330.0);
    }

    #[test]
    fn interpolation_ends_on_the_far_point() {
        let (a, b) = (LatLng::new(1.0, 2.0), LatLng::new(3.0, 6.0));
        assert_eq!(interpolate(a, b, 5, 5), b);
        assert_eq!(interpolate(a, b, 1, 2), LatLng::new(2.0, 4.0));
    }
}
