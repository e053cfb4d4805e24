//! The look and naming of a synthetic city. `nyc` (the training city) is a Manhattan-like grid
//! of tall brick and stone buildings with yellow centre lines; `worldwide` (the visual-OOD test
//! city) is a low, pastel, irregular grid somewhere else in the world with white markings,
//! shuttered windows and a warmer sky.

/// The visual styles `sftvsrl nav world --city` accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CityStyle {
    Nyc,
    Worldwide,
}

impl std::str::FromStr for CityStyle {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "nyc" => Ok(CityStyle::Nyc),
            "worldwide" => Ok(CityStyle::Worldwide),
            other => Err(format!(
                "unknown city style {other:?}; expected nyc or worldwide"
            )),
        }
    }
}

/// Colours as RGB bytes.
pub type Rgb = [u8; 3];

/// Everything colour-related of a style.
pub struct Palette {
    pub sky_zenith: Rgb,
    pub sky_horizon: Rgb,
    pub asphalt: Rgb,
    pub centre_line: Rgb,
    pub crossing: Rgb,
    pub sidewalk: Rgb,
    pub sidewalk_seam: Rgb,
    pub walls: &'static [Rgb],
    pub window: Rgb,
    pub window_frame: Rgb,
    pub shutters: Option<Rgb>,
    pub cornice: Rgb,
    pub storefront: Rgb,
    pub signs: &'static [(Rgb, Rgb)],
}

/// The parameters of a style: geometry, colours and names.
pub struct Style {
    pub palette: Palette,
    /// Spacing of the avenues and of the streets (min, max) in metres.
    pub avenue_gap: (f64, f64),
    pub street_gap: (f64, f64),
    /// Half road widths of avenues and streets, and the sidewalk width, in metres.
    pub avenue_half_road: f64,
    pub street_half_road: f64,
    pub sidewalk: f64,
    /// How far from a turn a business may be to serve as its landmark, in metres.
    pub landmark_radius: f64,
    /// Building heights (min, max) in metres.
    pub heights: (f64, f64),
    /// Lot frontages (min, max) in metres.
    pub lot_width: (f64, f64),
    /// Avenues and streets with street views.
    pub avenues: usize,
    pub streets: usize,
    /// Grid rotation (compass heading of the avenues) when fixed.
    pub grid_heading: Option<f64>,
    /// Candidate city centres: (name, latitude, longitude).
    pub cities: &'static [(&'static str, f64, f64)],
    pub avenue_names: &'static [&'static str],
    pub street_names: &'static [&'static str],
    pub name_words: &'static [&'static str],
    /// Business kinds with their Google place types.
    pub kinds: &'static [(&'static str, &'static str)],
    /// Whether the kind word comes first ("Trattoria Bella") or last ("Hudson Deli").
    pub kind_first: bool,
}

impl CityStyle {
    pub fn name(self) -> &'static str {
        match self {
            CityStyle::Nyc => "nyc",
            CityStyle::Worldwide => "worldwide",
        }
    }

    pub fn style(self) -> Style {
        match self {
            CityStyle::Nyc => Style {
                palette: Palette {
                    sky_zenith: [74, 128, 196],
                    sky_horizon: [196, 214, 232],
                    asphalt: [72, 72, 76],
                    centre_line: [232, 192, 40],
                    crossing: [226, 226, 220],
                    sidewalk: [150, 148, 142],
                    sidewalk_seam: [118, 116, 110],
                    walls: &[
                        [142, 72, 58],
                        [120, 64, 52],
                        [168, 152, 130],
                        [110, 104, 98],
                        [150, 96, 70],
                        [186, 178, 160],
                        [96, 70, 62],
                    ],
                    window: [40, 52, 66],
                    window_frame: [214, 210, 198],
                    shutters: None,
                    cornice: [70, 62, 58],
                    storefront: [28, 34, 40],
                    signs: &[
                        ([20, 20, 24], [250, 250, 250]),
                        ([180, 22, 30], [255, 255, 255]),
                        ([16, 60, 140], [255, 255, 255]),
                        ([250, 210, 40], [20, 20, 20]),
                        ([20, 100, 60], [255, 255, 255]),
                        ([240, 240, 236], [20, 20, 24]),
                    ],
                },
                avenue_gap: (150.0, 190.0),
                street_gap: (70.0, 90.0),
                avenue_half_road: 9.0,
                street_half_road: 5.5,
                sidewalk: 4.0,
                landmark_radius: 25.0,
                heights: (14.0, 60.0),
                lot_width: (12.0, 26.0),
                avenues: 6,
                streets: 10,
                grid_heading: Some(29.0),
                cities: &[("New York", 40.7228, -73.9985)],
                avenue_names: &[
                    "Bowery",
                    "Lafayette St",
                    "Broadway",
                    "Mercer St",
                    "Greene St",
                    "Wooster St",
                    "W Broadway",
                    "Thompson St",
                    "Sullivan St",
                    "MacDougal St",
                ],
                street_names: &[
                    "Bleecker St",
                    "Houston St",
                    "Prince St",
                    "Spring St",
                    "Broome St",
                    "Grand St",
                    "Howard St",
                    "Canal St",
                    "Walker St",
                    "White St",
                    "Franklin St",
                    "Leonard St",
                    "Worth St",
                    "Duane St",
                ],
                name_words: &[
                    "Hudson", "Empire", "Union", "Liberty", "Bowery", "Chelsea", "Delancey",
                    "Astor", "Gotham", "Metro", "Village", "Harbor", "Bleecker", "Lenox",
                    "Madison", "Orchard", "Ludlow", "Carmine", "Mott", "Crosby", "Baxter", "Pearl",
                    "Fulton", "Hester", "Elm", "Cedar", "Vesey", "Warren", "Spruce", "Jay",
                ],
                kinds: &[
                    ("Deli", "food"),
                    ("Pizza", "restaurant"),
                    ("Bagels", "bakery"),
                    ("Coffee", "cafe"),
                    ("Books", "book_store"),
                    ("Pharmacy", "pharmacy"),
                    ("Diner", "restaurant"),
                    ("Bakery", "bakery"),
                    ("Shoes", "shoe_store"),
                    ("Cleaners", "laundry"),
                    ("Florist", "florist"),
                    ("Hardware", "hardware_store"),
                    ("Tailor", "clothing_store"),
                    ("Bank", "bank"),
                    ("Wine Bar", "bar"),
                    ("Noodles", "restaurant"),
                    ("Barber", "hair_care"),
                    ("Optical", "store"),
                    ("Gym", "gym"),
                    ("Market", "grocery_or_supermarket"),
                ],
                kind_first: false,
            },
            CityStyle::Worldwide => Style {
                palette: Palette {
                    sky_zenith: [104, 150, 200],
                    sky_horizon: [236, 216, 188],
                    asphalt: [96, 92, 88],
                    centre_line: [236, 236, 230],
                    crossing: [236, 236, 230],
                    sidewalk: [196, 176, 142],
                    sidewalk_seam: [160, 140, 110],
                    walls: &[
                        [222, 176, 106],
                        [206, 120, 84],
                        [236, 214, 170],
                        [170, 196, 168],
                        [226, 196, 206],
                        [240, 230, 206],
                        [196, 160, 120],
                    ],
                    window: [54, 48, 44],
                    window_frame: [250, 246, 236],
                    shutters: Some([52, 104, 70]),
                    cornice: [160, 84, 56],
                    storefront: [60, 44, 36],
                    signs: &[
                        ([120, 30, 40], [255, 244, 220]),
                        ([30, 80, 60], [255, 250, 230]),
                        ([250, 246, 232], [90, 40, 30]),
                        ([40, 60, 110], [255, 236, 180]),
                        ([230, 140, 40], [40, 24, 16]),
                    ],
                },
                avenue_gap: (60.0, 110.0),
                street_gap: (60.0, 110.0),
                avenue_half_road: 5.0,
                street_half_road: 4.0,
                sidewalk: 2.5,
                landmark_radius: 20.0,
                heights: (8.0, 20.0),
                lot_width: (9.0, 18.0),
                avenues: 8,
                streets: 8,
                grid_heading: None,
                cities: &[
                    ("Milan", 45.4642, 9.1900),
                    ("New Delhi", 28.6139, 77.2090),
                    ("Buenos Aires", -34.6037, -58.3816),
                    ("London", 51.5074, -0.1278),
                    ("Hong Kong", 22.2819, 114.1581),
                    ("Melbourne", -37.8136, 144.9631),
                    ("Lagos", 6.4541, 3.3947),
                    ("San Francisco", 37.7880, -122.4075),
                ],
                avenue_names: &[
                    "Via Roma",
                    "Rua Augusta",
                    "Calle Mayor",
                    "King St",
                    "Rue Cler",
                    "MG Road",
                    "Av Corrientes",
                    "Queens Rd",
                    "Collins St",
                    "Allen Ave",
                    "Via Dante",
                    "Nathan Rd",
                ],
                street_names: &[
                    "Via Torino",
                    "Calle Luna",
                    "Rue Bonaparte",
                    "Park Lane",
                    "Lotus Rd",
                    "Market St",
                    "Flinders Ln",
                    "Marina Rd",
                    "Via Verdi",
                    "Calle Sol",
                    "Rose St",
                    "Hill Rd",
                ],
                name_words: &[
                    "Bella",
                    "Sol",
                    "Lotus",
                    "Jacaranda",
                    "Mercado",
                    "Petit",
                    "Dragon",
                    "Savanna",
                    "Aurora",
                    "Kiwi",
                    "Maple",
                    "Baobab",
                    "Lago",
                    "Sakura",
                    "Olive",
                    "Luna",
                    "Rosa",
                    "Jade",
                    "Nilo",
                    "Tango",
                    "Coral",
                    "Monsoon",
                    "Azul",
                    "Piccolo",
                    "Saffron",
                    "Cedro",
                    "Lumiere",
                    "Bonito",
                    "Mango",
                    "Ivy",
                ],
                kinds: &[
                    ("Trattoria", "restaurant"),
                    ("Boulangerie", "bakery"),
                    ("Cafe", "cafe"),
                    ("Chai House", "cafe"),
                    ("Parrilla", "restaurant"),
                    ("Dim Sum", "restaurant"),
                    ("Gelateria", "food"),
                    ("Kiosk", "store"),
                    ("Pharmacie", "pharmacy"),
                    ("Libreria", "book_store"),
                    ("Suya Spot", "restaurant"),
                    ("Tea Room", "cafe"),
                    ("Bistro", "restaurant"),
                    ("Empanadas", "food"),
                    ("Pasticceria", "bakery"),
                    ("Boutique", "clothing_store"),
                    ("Farmacia", "pharmacy"),
                    ("Spice Shop", "store"),
                ],
                kind_first: true,
            },
        }
    }
}
