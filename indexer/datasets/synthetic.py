"""Synthetic street-to-shop photos made from catalog images (product shots on white).

The catalog has no street photos, so queries are made: the product is cut out of its white background, warped
(scale, position, rotation, perspective, mirror), composited onto a varied scene (gradients, procedural textures,
clutter, other garments), partly occluded, cropped, re-lit and colour-shifted, blurred, noised, shrunk and
JPEG-recompressed. Everything is drawn from a numpy Generator seeded by (seed, product id, view), so a view is
reproducible on its own, in any order, in any process. Results made this way are *synthetic* and are reported as
such.

Pure PIL + numpy; about 2-4 ms per view at 128 px on one core.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageEnhance, ImageFilter, ImageOps

# Bumped whenever the drawing code changes what a (seed, product, view) produces; part of cache keys.
SYNTHETIC_VERSION = 2


@dataclass(frozen=True)
class SyntheticConfig:
    """How hard the synthetic street photos are. Probabilities are per view; ranges are uniform.

    The defaults model a street photo cropped to the garment (as a shopper's crop or a detector's box would):
    the product is the main subject, on a real-world-like (muted) scene with other things around and in front of
    it, under other light, through a worse camera.

    Attributes:
        size: Longer side of the output photo in pixels.
        min_product_height / max_product_height: Product size (its box fitted into the frame) as a fraction of the
            frame.
        max_rotation_deg: Largest in-plane rotation either way.
        max_perspective: Largest corner displacement of the perspective warp, as a fraction of the product size.
        p_other_garments: Chance of other catalog products placed in the scene behind the product.
        max_other_garment: Largest size of such a garment, as a fraction of the scene's shorter side.
        min_muting / max_muting: How far the scene's colours are pulled towards grey (0 = saturated colours).
        p_clutter: Chance of random shapes in the background.
        p_occlusion: Chance of something (a garment or a shape) in front of the product.
        max_occlusion: Largest occluded share of the product's box.
        min_visible: Smallest share of the product box a crop keeps.
        p_blur / max_blur: Chance and largest radius of a Gaussian blur.
        max_noise: Largest standard deviation of the Gaussian pixel noise (0..255 units).
        p_low_res / min_low_res: Chance of shrinking to as little as this fraction of the size and back.
        min_jpeg_quality / max_jpeg_quality: JPEG re-compression quality range.
        max_colour_shift: Largest per-channel gain change (white balance), e.g. 0.12 = 0.88..1.12.
        max_light: Largest relative change of brightness, contrast and saturation.
        p_shadow: Chance of a soft shadow / light fall-off across the picture.
    """

    size: int = 128
    min_product_height: float = 0.65
    max_product_height: float = 0.95
    max_rotation_deg: float = 10.0
    max_perspective: float = 0.08
    p_other_garments: float = 0.4
    max_other_garment: float = 0.45
    min_muting: float = 0.3
    max_muting: float = 0.8
    p_clutter: float = 0.4
    p_occlusion: float = 0.3
    max_occlusion: float = 0.15
    min_visible: float = 0.8
    p_blur: float = 0.3
    max_blur: float = 1.0
    max_noise: float = 6.0
    p_low_res: float = 0.25
    min_low_res: float = 0.55
    min_jpeg_quality: int = 40
    max_jpeg_quality: int = 90
    max_colour_shift: float = 0.06
    max_light: float = 0.2
    p_shadow: float = 0.3

    def describe(self) -> dict:
        """JSON-able parameters plus the generator version (for manifests and cache keys)."""
        return {**asdict(self), "version": SYNTHETIC_VERSION}


def hard_street_config(size: int = 320) -> SyntheticConfig:
    """The hard street set of issue 16: the garment 20-55% of a cluttered frame, rotated or sheared, partly out of
    the frame, partly covered by another product, under a colour cast or low light, blurred, JPEG 25-70."""
    return SyntheticConfig(size=size, min_product_height=0.2, max_product_height=0.55, max_rotation_deg=25.0,
                           max_perspective=0.15, p_other_garments=0.9, max_other_garment=0.5, p_clutter=0.9,
                           p_occlusion=0.6, max_occlusion=0.35, min_visible=0.65, p_blur=0.5, max_blur=1.6,
                           max_noise=8.0, p_low_res=0.3, min_low_res=0.5, min_jpeg_quality=25, max_jpeg_quality=70,
                           max_colour_shift=0.15, max_light=0.35, p_shadow=0.5)


def street_crop_config(size: int = 128) -> SyntheticConfig:
    """What a detector's padded box of a hard street photo holds (``hard_street_config``'s damage, the product 60-95%
    of the crop, small products' lost resolution as stronger shrinking): the street encoder's training queries."""
    return replace(hard_street_config(size), min_product_height=0.6, max_product_height=0.95,
                               p_low_res=0.5, min_low_res=0.4)


def view_rng(seed: int, product_id: str, view: int) -> np.random.Generator:
    """The Generator for one view: depends only on (seed, product id, view number)."""
    digest = hashlib.sha256(f"{seed}|{product_id}|{view}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "big"))


def _reachable_from_border(passable: np.ndarray) -> np.ndarray:
    """Pixels of ``passable`` connected (4-neighbourhood) to the image border through passable pixels."""
    reach = np.zeros_like(passable)
    reach[0, :], reach[-1, :], reach[:, 0], reach[:, -1] = passable[0, :], passable[-1, :], passable[:, 0], \
        passable[:, -1]
    while True:
        grown = reach.copy()
        grown[1:, :] |= reach[:-1, :]
        grown[:-1, :] |= reach[1:, :]
        grown[:, 1:] |= reach[:, :-1]
        grown[:, :-1] |= reach[:, 1:]
        grown &= passable
        if np.array_equal(grown, reach):
            return reach
        reach = grown


def product_mask(img: Image.Image, threshold: int = 12) -> Image.Image:
    """Foreground mask ("L", 0..255, lightly feathered) of a product photographed on white.

    A pixel is background when it is near white *and* connected to the border through near-white pixels, so
    white parts inside a garment (a white shirt's front, a logo) stay foreground. When that leaves less than 60%
    of the content's row-and-column hull (a white garment whose outline has gaps lets the background "leak" in),
    the hull is used instead: a pixel is foreground when content lies on both sides of it in its row and in its
    column.
    """
    rgb = np.asarray(img.convert("RGB"), dtype=np.int16)
    content_img = Image.fromarray(np.where((255 - rgb).max(axis=2) > threshold, 255, 0).astype(np.uint8), "L")
    # A closing (dilate then erode) joins thin gaps in the outline before the background is traced.
    content = np.asarray(content_img.filter(ImageFilter.MaxFilter(3)).filter(ImageFilter.MinFilter(3))) > 0
    if not content.any():  # an all-white picture: keep everything rather than nothing
        return Image.new("L", img.size, 255)
    mask = ~_reachable_from_border(~content)
    rows_l = np.maximum.accumulate(content, axis=1)
    rows_r = np.maximum.accumulate(content[:, ::-1], axis=1)[:, ::-1]
    cols_t = np.maximum.accumulate(content, axis=0)
    cols_b = np.maximum.accumulate(content[::-1, :], axis=0)[::-1, :]
    hull = rows_l & rows_r & cols_t & cols_b
    if mask.sum() < 0.6 * hull.sum():
        mask = hull
    # One pixel of erosion drops the light JPEG fringe that would otherwise outline the product in white.
    eroded = Image.fromarray(mask.astype(np.uint8) * 255, "L").filter(ImageFilter.MinFilter(3))
    return eroded.filter(ImageFilter.GaussianBlur(0.6))


def _rand_colour(rng: np.random.Generator, lo: int = 0, hi: int = 256) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(lo, hi, 3))


def _gradient(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    a, b = np.array(_rand_colour(rng), np.float32), np.array(_rand_colour(rng), np.float32)
    angle = rng.uniform(0, np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = xx * np.cos(angle) / max(w, 1) + yy * np.sin(angle) / max(h, 1)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    return a + (b - a) * t[..., None]


def _value_noise(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    cells = int(rng.integers(3, 12))
    small = rng.integers(0, 256, (cells, cells, 3), dtype=np.uint8)
    tint = np.array(_rand_colour(rng), np.float32)
    base = np.asarray(Image.fromarray(small, "RGB").resize((w, h), Image.Resampling.BICUBIC), np.float32)
    mix = rng.uniform(0.3, 0.9)
    return base * mix + tint * (1 - mix)


def _stripes(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    a, b = np.array(_rand_colour(rng), np.float32), np.array(_rand_colour(rng), np.float32)
    period = rng.uniform(4, 24)
    angle = rng.uniform(0, np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    phase = (xx * np.cos(angle) + yy * np.sin(angle)) / period
    if rng.random() < 0.5:  # checks instead of stripes
        phase2 = (-xx * np.sin(angle) + yy * np.cos(angle)) / period
        t = ((np.floor(phase) + np.floor(phase2)) % 2)[..., None]
    else:
        t = (0.5 + 0.5 * np.sin(2 * np.pi * phase))[..., None]
    return a + (b - a) * t


def _wood(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Wood/marble-like rings: a sine of distance perturbed by value noise."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cx, cy = rng.uniform(-w, 2 * w), rng.uniform(-h, 2 * h)
    noise = _value_noise(rng, w, h).mean(axis=2) / 255.0
    r = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2) / rng.uniform(3, 10) + noise * rng.uniform(2, 8)
    t = (0.5 + 0.5 * np.sin(r))[..., None]
    a, b = np.array(_rand_colour(rng), np.float32), np.array(_rand_colour(rng), np.float32)
    return a + (b - a) * t


def background(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    """A w x h scene background: flat colour, gradient, value noise, stripes or wood grain."""
    kind = rng.choice(["flat", "gradient", "noise", "stripes", "wood"], p=[0.1, 0.25, 0.25, 0.2, 0.2])
    if kind == "flat":
        arr = np.empty((h, w, 3), np.float32)
        arr[:] = _rand_colour(rng)
    else:
        arr = {"gradient": _gradient, "noise": _value_noise, "stripes": _stripes, "wood": _wood}[kind](rng, w, h)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def draw_clutter(rng: np.random.Generator, scene: Image.Image, n: int) -> None:
    """Draw n random shapes (boxes, ellipses, lines) onto the scene in place."""
    draw = ImageDraw.Draw(scene)
    w, h = scene.size
    for _ in range(n):
        x0, y0 = rng.uniform(-0.2 * w, w), rng.uniform(-0.2 * h, h)
        x1, y1 = x0 + rng.uniform(0.05, 0.5) * w, y0 + rng.uniform(0.05, 0.5) * h
        colour = _rand_colour(rng)
        shape = rng.integers(0, 4)
        if shape == 0:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        elif shape == 1:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        elif shape == 2:
            pts = [(float(rng.uniform(x0, x1)), float(rng.uniform(y0, y1))) for _ in range(int(rng.integers(3, 7)))]
            draw.polygon(pts, fill=colour)
        else:
            draw.line((x0, y0, x1, y1), fill=colour, width=int(rng.integers(1, 6)))


def _perspective_coeffs(src: Sequence[tuple[float, float]], dst: Sequence[tuple[float, float]]) -> list[float]:
    """Coefficients for PIL's PERSPECTIVE transform mapping output points ``dst`` back to input points ``src``."""
    rows = []
    for (x, y), (u, v) in zip(dst, src, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    a = np.array(rows, dtype=np.float64)
    b = np.array([c for pt in src for c in pt], dtype=np.float64)
    return np.linalg.solve(a, b).tolist()


def warp_product(rng: np.random.Generator, rgb: Image.Image, mask: Image.Image, fit: tuple[float, float],
                  cfg: SyntheticConfig) -> tuple[Image.Image, Image.Image]:
    """Crop to the product, scale it to fit a ``fit`` = (width, height) box, maybe mirror, perspective-warp and
    rotate; returns the warped RGB picture and its mask, cropped to the product."""
    box = mask.getbbox()
    if box:
        rgb, mask = rgb.crop(box), mask.crop(box)
    w0, h0 = rgb.size
    scale = min(fit[0] / w0, fit[1] / h0)
    stretch = rng.uniform(0.9, 1.1)
    width, height = max(4, round(w0 * scale * stretch)), max(4, round(h0 * scale))
    rgb = rgb.resize((width, height), Image.Resampling.BICUBIC)
    mask = mask.resize((width, height), Image.Resampling.BILINEAR)
    if rng.random() < 0.5:
        rgb, mask = ImageOps.mirror(rgb), ImageOps.mirror(mask)
    if cfg.max_perspective > 0:
        pad = int(cfg.max_perspective * max(width, height)) + 1
        rgb = ImageOps.expand(rgb, border=pad, fill=(255, 255, 255))
        mask = ImageOps.expand(mask, border=pad, fill=0)
        W, H = rgb.size
        corners = [(pad, pad), (W - pad, pad), (W - pad, H - pad), (pad, H - pad)]
        jitter = cfg.max_perspective * max(width, height)
        moved = [(x + float(rng.uniform(-jitter, jitter)), y + float(rng.uniform(-jitter, jitter))) for x, y in corners]
        coeffs = _perspective_coeffs(corners, moved)
        rgb = rgb.transform(rgb.size, Image.Transform.PERSPECTIVE, coeffs, Image.Resampling.BILINEAR,
                            fillcolor=(255, 255, 255))
        mask = mask.transform(mask.size, Image.Transform.PERSPECTIVE, coeffs, Image.Resampling.BILINEAR, fillcolor=0)
    angle = float(rng.uniform(-cfg.max_rotation_deg, cfg.max_rotation_deg))
    if abs(angle) > 0.5:
        rgb = rgb.rotate(angle, Image.Resampling.BILINEAR, expand=True, fillcolor=(255, 255, 255))
        mask = mask.rotate(angle, Image.Resampling.BILINEAR, expand=True, fillcolor=0)
    box = mask.getbbox()
    if box:
        rgb, mask = rgb.crop(box), mask.crop(box)
    return rgb, mask


def _paste_garment(rng: np.random.Generator, scene: Image.Image, garment: Image.Image, extent: float,
                   center: tuple[float, float], cfg: SyntheticConfig) -> tuple[int, int, int, int]:
    rgb, mask = warp_product(rng, garment.convert("RGB"), product_mask(garment), (max(8.0, extent),) * 2, cfg)
    x = round(center[0] - rgb.size[0] / 2)
    y = round(center[1] - rgb.size[1] / 2)
    scene.paste(rgb, (x, y), mask)
    return x, y, x + rgb.size[0], y + rgb.size[1]


def relight(rng: np.random.Generator, img: Image.Image, cfg: SyntheticConfig) -> Image.Image:
    """Other light: brightness, contrast, saturation, white balance, maybe a shadow, gamma."""
    lo, hi = 1.0 - cfg.max_light, 1.0 + cfg.max_light
    img = ImageEnhance.Brightness(img).enhance(rng.uniform(lo, hi))
    img = ImageEnhance.Contrast(img).enhance(rng.uniform(lo, hi))
    img = ImageEnhance.Color(img).enhance(rng.uniform(lo, hi))
    arr = np.asarray(img, np.float32)
    gains = 1.0 + rng.uniform(-cfg.max_colour_shift, cfg.max_colour_shift, 3)
    arr = arr * gains
    if rng.random() < cfg.p_shadow:  # a soft shadow or light fall-off across the picture
        h, w = arr.shape[:2]
        shade = _gradient(np.random.default_rng(int(rng.integers(1 << 62))), w, h).mean(axis=2, keepdims=True) / 255.0
        arr = arr * (rng.uniform(0.6, 0.85) + rng.uniform(0.15, 0.4) * shade)
    gamma = rng.uniform(1.0 - cfg.max_light, 1.0 / (1.0 - cfg.max_light))
    arr = 255.0 * (np.clip(arr, 0, 255) / 255.0) ** gamma
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def degrade(rng: np.random.Generator, img: Image.Image, cfg: SyntheticConfig) -> Image.Image:
    """A worse camera: maybe blur, noise, low resolution; always JPEG re-compression."""
    if rng.random() < cfg.p_blur:
        img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, cfg.max_blur))))
    if cfg.max_noise > 0:
        sigma = rng.uniform(0, cfg.max_noise)
        arr = np.asarray(img, np.float32) + rng.normal(0, sigma, (img.size[1], img.size[0], 3))
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    if rng.random() < cfg.p_low_res:
        f = rng.uniform(cfg.min_low_res, 0.85)
        small = img.resize((max(8, round(img.size[0] * f)), max(8, round(img.size[1] * f))), Image.Resampling.BILINEAR)
        img = small.resize(img.size, Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=int(rng.integers(cfg.min_jpeg_quality, cfg.max_jpeg_quality + 1)))
    buf.seek(0)
    out = Image.open(buf)
    out.load()
    return out.convert("RGB")


def synthesize_street_photo(product: Image.Image, rng: np.random.Generator,
                            distractors: Sequence[Image.Image] = (),
                            cfg: SyntheticConfig = SyntheticConfig()) -> Image.Image:
    """Make one synthetic street photo of ``product``.

    Args:
        product: The catalog photo (product on white), any size and mode.
        rng: Source of every random choice (see ``view_rng``).
        distractors: Other product photos that may appear behind or in front of the product.
        cfg: Difficulty knobs.

    Returns:
        An RGB photo whose longer side is ``cfg.size``.
    """
    aspect = float(rng.uniform(0.75, 1.33))  # width / height of the "camera" frame
    out_w, out_h = (cfg.size, max(16, round(cfg.size / aspect))) if aspect >= 1 else \
        (max(16, round(cfg.size * aspect)), cfg.size)
    # Work on a canvas a bit larger than the frame so that the final crop can zoom and cut.
    W, H = round(out_w * 1.25), round(out_h * 1.25)
    scene = background(rng, W, H)
    if rng.random() < cfg.p_clutter:
        draw_clutter(rng, scene, int(rng.integers(2, 9)))
    if distractors and rng.random() < cfg.p_other_garments:
        for _ in range(int(rng.integers(1, 3))):
            other = distractors[int(rng.integers(len(distractors)))]
            _paste_garment(rng, scene, other, min(W, H) * rng.uniform(0.2, cfg.max_other_garment),
                           (float(rng.uniform(0, W)), float(rng.uniform(0, H))), cfg)
    mute = rng.uniform(cfg.min_muting, cfg.max_muting)  # real scenes are far less saturated than random colours
    scene = Image.blend(scene, ImageOps.grayscale(scene).convert("RGB"), float(mute))
    if rng.random() < 0.5:
        scene = scene.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 2.0))))  # shallow depth of field

    extent = rng.uniform(cfg.min_product_height, cfg.max_product_height)
    rgb, mask = warp_product(rng, product.convert("RGB"), product_mask(product),
                              (max(8.0, out_w * extent), max(8.0, out_h * extent)), cfg)
    pw, ph = rgb.size
    cx = W / 2 + rng.uniform(-0.2, 0.2) * out_w
    cy = H / 2 + rng.uniform(-0.15, 0.15) * out_h
    x0, y0 = round(cx - pw / 2), round(cy - ph / 2)
    if rng.random() < 0.5:  # a drop shadow under the product
        shadow = Image.new("RGB", scene.size, (0, 0, 0))
        smask = Image.new("L", scene.size, 0)
        smask.paste(mask.point(lambda v: int(v * 0.45)), (x0 + int(rng.integers(-4, 5)), y0 + int(rng.integers(1, 6))))
        scene.paste(shadow, (0, 0), smask.filter(ImageFilter.GaussianBlur(3)))
    scene.paste(rgb, (x0, y0), mask)
    prod_box = (x0, y0, x0 + pw, y0 + ph)

    if rng.random() < cfg.p_occlusion:
        share = rng.uniform(0.05, cfg.max_occlusion)
        ow, oh = pw * np.sqrt(share) * rng.uniform(0.7, 1.4), ph * np.sqrt(share) * rng.uniform(0.7, 1.4)
        side = rng.integers(4)  # occluders come in from an edge of the product, as a hand or a bag would
        ox = x0 + (rng.uniform(0, pw) if side < 2 else (0 if side == 2 else pw))
        oy = y0 + (rng.uniform(0, ph) if side >= 2 else (0 if side == 0 else ph))
        if distractors and rng.random() < 0.5:
            other = distractors[int(rng.integers(len(distractors)))]
            _paste_garment(rng, scene, other, max(oh, ow) * 1.3, (float(ox), float(oy)), cfg)
        else:
            occ = Image.new("L", scene.size, 0)
            ImageDraw.Draw(occ).ellipse((ox - ow / 2, oy - oh / 2, ox + ow / 2, oy + oh / 2), fill=255)
            colour = Image.new("RGB", scene.size, _rand_colour(rng))
            scene.paste(colour, (0, 0), occ.filter(ImageFilter.GaussianBlur(1)))

    scene = _crop_around(rng, scene, prod_box, out_w, out_h, cfg)
    scene = relight(rng, scene, cfg)
    return degrade(rng, scene, cfg)


def _crop_around(rng: np.random.Generator, scene: Image.Image, box: tuple[int, int, int, int], out_w: int,
                 out_h: int, cfg: SyntheticConfig) -> Image.Image:
    """Crop an out_w x out_h frame (zoomed in or out a little) that keeps at least ``min_visible`` of the box."""
    W, H = scene.size
    zoom = rng.uniform(0.8, 1.2)
    fw, fh = min(W, out_w * zoom), min(H, out_h * zoom)
    bx0, by0, bx1, by1 = box
    bw, bh = bx1 - bx0, by1 - by0
    for _ in range(10):
        fx = rng.uniform(0, W - fw)
        fy = rng.uniform(0, H - fh)
        vis_w = max(0.0, min(bx1, fx + fw) - max(bx0, fx))
        vis_h = max(0.0, min(by1, fy + fh) - max(by0, fy))
        if vis_w * vis_h >= cfg.min_visible * bw * bh:
            break
    else:  # centre the frame on the product
        fx = min(max(0.0, (bx0 + bx1) / 2 - fw / 2), W - fw)
        fy = min(max(0.0, (by0 + by1) / 2 - fh / 2), H - fh)
    frame = scene.crop((round(fx), round(fy), round(fx + fw), round(fy + fh)))
    return frame.resize((out_w, out_h), Image.Resampling.BILINEAR)


class StreetPhotoSynthesizer:
    """Reproducible synthetic street photos for catalog products.

    Args:
        load_image: Loads a product photo by product id.
        distractor_ids: Products that may appear as other garments in the scene (use ids of the same split as
            the products synthesized, so that no pixel of a test product ever reaches training).
        seed: Global seed; with the product id and view number it fixes every choice.
        cfg: Difficulty knobs.
        n_distractors: Other garments loaded per view (drawn from ``distractor_ids``).
    """

    def __init__(self, load_image: Callable[[str], Image.Image], distractor_ids: Sequence[str] = (), seed: int = 0,
                 cfg: SyntheticConfig = SyntheticConfig(), n_distractors: int = 3) -> None:
        self.load_image = load_image
        self.distractor_ids = list(distractor_ids)
        self.seed = seed
        self.cfg = cfg
        self.n_distractors = n_distractors

    def describe(self) -> dict:
        """Seed and config, for manifests."""
        return {"seed": self.seed, "n_distractors": self.n_distractors, "distractor_pool": len(self.distractor_ids),
                **self.cfg.describe()}

    def view(self, product_id: str, view: int, product: Image.Image | None = None) -> Image.Image:
        """Synthetic photo number ``view`` of ``product_id`` (the same pixels every time)."""
        rng = view_rng(self.seed, product_id, view)
        img = product if product is not None else self.load_image(product_id)
        distractors: list[Image.Image] = []
        pool = [d for d in self.distractor_ids if d != product_id] if len(self.distractor_ids) < 64 else \
            self.distractor_ids
        if pool:
            for _ in range(self.n_distractors):
                pick = pool[int(rng.integers(len(pool)))]
                if pick != product_id:
                    distractors.append(self.load_image(pick))
        return synthesize_street_photo(img, rng, distractors, self.cfg)


def difference(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute pixel difference of two same-size RGB images (0..255); used by tests."""
    return float(np.asarray(ImageChops.difference(a.convert("RGB"), b.convert("RGB")), np.float32).mean())
