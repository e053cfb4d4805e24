use std::path::Path;
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let img = image::open(Path::new(&args[1])).unwrap().into_rgb8();
    let img = if args.len() > 3 {
        let (x, y, w, h): (u32, u32, u32, u32) = (args[3].parse().unwrap(), args[4].parse().unwrap(), args[5].parse().unwrap(), args[6].parse().unwrap());
        image::imageops::crop_imm(&img, x, y, w, h).to_image()
    } else { img };
    let s = if img.width() > 1600 { image::imageops::resize(&img, img.width() / 2, img.height() / 2, image::imageops::FilterType::Triangle) } else { img };
    s.save(&args[2]).unwrap();
}
