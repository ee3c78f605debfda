"""A seeded synthetic data set in the iSAID layout, for demos, tests and smoke runs.

Each image is an aerial-looking scene (smooth soil and vegetation noise, fields, roads, and
often a water body) with every iSAID class drawn in its own shape and colours: many small
objects (vehicles, tanks, ships, planes...) and a few large ones (courts, fields, a roundabout).
The masks are iSAID colour masks (:data:`data.isaid.COLOR_MAP`), so the data set reads exactly
like the real one. Drawing uses NumPy only; the same ``seed`` always gives the same files.

Command line::

    python -m data.demo --out ./demo_isaid --num-train 8 --num-val 4 --size 512 512
"""

import argparse
import os

import numpy as np
from PIL import Image

from data.isaid import CLASS_NAMES, COLOR_MAP, COLOR_MASK_SUFFIX
from simplecv.util.cli import add_size_option
from simplecv.util.logger import configure_logging

_SPLIT_CODES = {'train': 0, 'val': 1}
_CLS = {name: index for index, name in enumerate(CLASS_NAMES)}


def _smooth_noise(rng, height, width, cell):
    """Bilinearly upsampled uniform noise in [0, 1], shape ``(height, width)``."""
    grid = rng.random((height // cell + 2, width // cell + 2))
    ys, xs = np.arange(height) / cell, np.arange(width) / cell
    y0, x0 = ys.astype(int), xs.astype(int)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x0 + 1] * fx
    bottom = grid[y0 + 1][:, x0] * (1 - fx) + grid[y0 + 1][:, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


class _Canvas:
    """An image, its label map and the discs already taken by objects."""

    def __init__(self, image, rng):
        self.image = image
        self.label = np.zeros(image.shape[:2], dtype=np.uint8)
        self.rng = rng
        self.taken = []

    def claim(self, x, y, radius):
        """Reserve the disc of ``radius`` at ``(x, y)`` if it overlaps no object; return success."""
        if any((x - tx) ** 2 + (y - ty) ** 2 <= (radius + tr) ** 2 for tx, ty, tr in self.taken):
            return False
        self.taken.append((x, y, radius))
        return True

    def free_spot(self, radius, region=None, tries=30):
        """Return a centre ``(x, y)`` in ``region`` whose disc of ``radius`` is free, or None."""
        height, width = self.label.shape
        if 2 * radius >= min(height, width):
            return None
        for _ in range(tries):
            x = self.rng.uniform(radius, width - radius)
            y = self.rng.uniform(radius, height - radius)
            if (region is None or region[int(y), int(x)]) and self.claim(x, y, radius):
                return x, y
        return None

    def stamp(self, cls, cx, cy, theta, radius, shape, paint):
        """Draw one object.

        Args:
            cls: class index written to the label map.
            cx, cy: centre in pixels.
            theta: rotation in radians.
            radius: half-size of the square that holds the object.
            shape: ``f(u, v) -> bool array``, True inside the object, in object coordinates.
            paint: ``f(u, v) -> (n, 3)`` colours for the ``n`` pixels inside, or one RGB triple.
        """
        height, width = self.label.shape
        x0, x1 = max(int(cx - radius), 0), min(int(cx + radius) + 2, width)
        y0, y1 = max(int(cy - radius), 0), min(int(cy + radius) + 2, height)
        if x0 >= x1 or y0 >= y1:
            return
        dy, dx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
        dx, dy = dx - cx, dy - cy
        cos, sin = np.cos(theta), np.sin(theta)
        u, v = cos * dx + sin * dy, -sin * dx + cos * dy
        inside = shape(u, v)
        colors = np.broadcast_to(np.asarray(paint(u[inside], v[inside]), dtype=np.float64), (int(inside.sum()), 3))
        noise = self.rng.normal(0.0, 4.0, colors.shape)
        self.image[y0:y1, x0:x1][inside] = np.clip(colors + noise, 0, 255).astype(np.uint8)
        self.label[y0:y1, x0:x1][inside] = cls


def _rect(a, b):
    return lambda u, v: (np.abs(u) <= a) & (np.abs(v) <= b)


def _ellipse(a, b):
    return lambda u, v: (u / a) ** 2 + (v / b) ** 2 <= 1


def _on_lines(u, v, a, b, width=1.5):
    """True on the border of the ``2a x 2b`` rectangle and on its centre line."""
    return (np.abs(np.abs(u) - a) < width) | (np.abs(np.abs(v) - b) < width) | (np.abs(u) < width / 2)


def _lines(base, line, a, b):
    """Paint ``base`` with ``line``-coloured court lines."""
    return lambda u, v: np.where(_on_lines(u, v, a, b)[:, None], line, base)


def _draw_small_vehicle(canvas, x, y, theta):
    colors = ((200, 30, 30), (30, 50, 170), (20, 20, 20), (240, 240, 240), (150, 150, 155))
    color = colors[canvas.rng.integers(len(colors))]
    canvas.stamp(_CLS['small_vehicle'], x, y, theta, 5, _rect(4, 2), lambda u, v: color)


def _draw_large_vehicle(canvas, x, y, theta):
    def paint(u, v):
        return np.where((u > 5)[:, None], (90, 90, 100), (225, 215, 170))

    canvas.stamp(_CLS['large_vehicle'], x, y, theta, 10, _rect(8, 3), paint)


def _draw_ship(canvas, x, y, theta):
    length = canvas.rng.uniform(9, 14)

    def paint(u, v):
        return np.where(
            (np.abs(u) < length / 3)[:, None] & (np.abs(v) < 1.5)[:, None], (150, 150, 150), (240, 240, 235)
        )

    canvas.stamp(_CLS['ship'], x, y, theta, length + 1, _ellipse(length, length / 3.5), paint)


def _draw_storage_tank(canvas, x, y, radius):
    canvas.stamp(
        _CLS['storage_tank'],
        x,
        y,
        0.0,
        radius + 1,
        _ellipse(radius, radius),
        lambda u, v: np.where((u * u + v * v > (radius - 1.5) ** 2)[:, None], (90, 90, 90), (215, 215, 205)),
    )


def _draw_plane(canvas, x, y, theta):
    def shape(u, v):
        fuselage = (np.abs(u) <= 16) & (np.abs(v) <= 2.5)
        wings = (np.abs(u + 1) <= 3 + 0.15 * np.abs(v)) & (np.abs(v) <= 15)
        tail = (np.abs(u + 14) <= 2) & (np.abs(v) <= 6)
        return fuselage | wings | tail

    canvas.stamp(_CLS['plane'], x, y, theta, 23, shape, lambda u, v: (230, 230, 235))


def _draw_helicopter(canvas, x, y, theta):
    def shape(u, v):
        body = (u / 6) ** 2 + (v / 2.5) ** 2 <= 1
        blades = ((np.abs(u - v) <= 1) | (np.abs(u + v) <= 1)) & (u * u + v * v <= 81)
        tail = (u < -5) & (u > -14) & (np.abs(v) <= 0.8)
        return body | blades | tail

    canvas.stamp(_CLS['helicopter'], x, y, theta, 15, shape, lambda u, v: (60, 75, 45))


def _draw_swimming_pool(canvas, x, y, theta):
    a, b = canvas.rng.uniform(6, 10), canvas.rng.uniform(4, 6)

    def shape(u, v):
        # A rectangle with corners rounded to radius 2.
        return (np.maximum(np.abs(u) - a + 2, 0) ** 2 + np.maximum(np.abs(v) - b + 2, 0) ** 2) <= 4

    canvas.stamp(
        _CLS['swimming_pool'],
        x,
        y,
        theta,
        a + 2,
        shape,
        lambda u, v: np.where(
            (np.abs(u) > a - 1.2)[:, None] | (np.abs(v) > b - 1.2)[:, None], (235, 235, 235), (40, 175, 225)
        ),
    )


def _draw_tennis_court(canvas, x, y, theta):
    canvas.stamp(_CLS['tennis_court'], x, y, theta, 25, _rect(22, 11), _lines((60, 125, 85), (245, 245, 245), 21, 10))


def _draw_basketball_court(canvas, x, y, theta):
    def paint(u, v):
        base = _lines((185, 110, 60), (245, 245, 245), 15, 8)(u, v)
        ring = np.abs(np.hypot(u, v) - 3.5) < 0.8
        return np.where(ring[:, None], (245, 245, 245), base)

    canvas.stamp(_CLS['basketball_court'], x, y, theta, 19, _rect(16, 9), paint)


def _draw_soccer_field(canvas, x, y, theta):
    def paint(u, v):
        stripes = np.where(((u + 45) // 9 % 2 == 0)[:, None], (70, 165, 65), (95, 190, 85))
        return np.where(_on_lines(u, v, 43, 28)[:, None], (245, 245, 245), stripes)

    canvas.stamp(_CLS['soccer_ball_field'], x, y, theta, 55, _rect(45, 30), paint)


def _draw_track_field(canvas, x, y, theta):
    a, b = 60, 36

    def stadium(u, v, shrink):
        return (np.maximum(np.abs(u) - (a - b), 0) ** 2 + v**2) <= (b - shrink) ** 2

    canvas.stamp(
        _CLS['ground_track_field'],
        x,
        y,
        theta,
        a + 2,
        lambda u, v: stadium(u, v, 0),
        lambda u, v: np.where(stadium(u, v, 9)[:, None], (85, 150, 70), (175, 80, 60)),
    )


def _draw_baseball_diamond(canvas, x, y, theta):
    radius = canvas.rng.uniform(28, 38)

    def paint(u, v):
        # Sand on the infield diamond and the two base lines, grass elsewhere.
        sand = (np.abs(u - radius / 3) + np.abs(v - radius / 3) < radius / 4) | (u < 3) | (v < 3)
        return np.where(sand[:, None], (205, 165, 115), (115, 165, 85))

    def shape(u, v):
        # A quarter disc: the fan of a baseball field.
        return (u >= 0) & (v >= 0) & (u * u + v * v <= radius * radius)

    canvas.stamp(_CLS['baseball_diamond'], x - radius / 2, y - radius / 2, theta, radius * 1.5, shape, paint)


def _draw_roundabout(canvas, x, y, outer):
    inner = outer - 7

    def paint(u, v):
        return np.where((u * u + v * v < inner * inner)[:, None], (80, 140, 70), (125, 125, 125))

    canvas.stamp(_CLS['roundabout'], x, y, 0.0, outer + 1, _ellipse(outer, outer), paint)


def _background(rng, height, width):
    vegetation = _smooth_noise(rng, height, width, 64)[..., None]
    soil = np.array((150.0, 135.0, 105.0)) * (1 - vegetation) + np.array((70.0, 105.0, 60.0)) * vegetation
    image = soil * (0.85 + 0.3 * _smooth_noise(rng, height, width, 8)[..., None])
    for _ in range(rng.integers(2, 5)):
        # Fields: axis-aligned plots with a tint and plough stripes.
        h, w = rng.integers(height // 8, height // 3), rng.integers(width // 8, width // 3)
        y, x = rng.integers(0, height - h), rng.integers(0, width - w)
        tint = rng.uniform(0.75, 1.25, 3)
        stripes = 1 + 0.06 * np.sign(np.sin(np.arange(w) / rng.uniform(1.5, 4)))[None, :, None]
        image[y : y + h, x : x + w] = image[y : y + h, x : x + w] * tint * stripes
    return image + rng.normal(0.0, 5.0, image.shape)


def render_sample(rng, size=(512, 512)):
    """Draw one synthetic scene.

    Args:
        rng: ``np.random.Generator``.
        size: ``(H, W)``.

    Returns:
        tuple: ``(image (H, W, 3) uint8, label (H, W) uint8)`` with labels 0..15.
    """
    height, width = size
    image = _background(rng, height, width)
    water = np.zeros((height, width), dtype=bool)
    has_water = rng.random() < 0.7
    if has_water:
        depth = int(rng.uniform(0.22, 0.32) * width)
        water[:, :depth] = True
        image[water] = np.array((35.0, 70.0, 95.0)) + rng.normal(0.0, 3.0, (int(water.sum()), 3))
    roads = []
    for _ in range(rng.integers(1, 3)):
        horizontal = rng.random() < 0.5
        position = int(rng.uniform(0.2, 0.8) * (height if horizontal else width))
        half = int(rng.integers(4, 7))
        if horizontal:
            image[position - half : position + half, water[0].sum() :] = (115.0, 115.0, 112.0)
        else:
            image[:, position - half : position + half] = (115.0, 115.0, 112.0)
        roads.append((horizontal, position))
    canvas = _Canvas(np.clip(image, 0, 255).astype(np.uint8), rng)
    land = ~water

    def angle():
        return rng.uniform(0, np.pi)

    if has_water:
        depth = int(water[0].sum())
        bridge_y = rng.uniform(0.15, 0.85) * height
        canvas.stamp(
            _CLS['bridge'],
            depth / 2,
            bridge_y,
            0.0,
            depth / 2 + 6,
            _rect(depth / 2 + 4, 5),
            lambda u, v: np.where((np.abs(v) > 3.5)[:, None], (95, 95, 95), (160, 160, 155)),
        )
        canvas.taken.extend((x, bridge_y, 7) for x in range(0, depth + 8, 8))
        for _ in range(rng.integers(1, 3)):
            # Piers reach from the shore into the water.
            pier_y = rng.uniform(0.05, 0.95) * height
            if canvas.claim(depth - 24, pier_y, 26):
                canvas.stamp(_CLS['harbor'], depth - 24, pier_y, 0.0, 30, _rect(26, 5), lambda u, v: (140, 128, 105))
        for _ in range(rng.integers(4, 10)):
            spot = canvas.free_spot(14, region=water)
            if spot:
                _draw_ship(canvas, spot[0], spot[1], angle())
    large = [
        (_draw_track_field, 64),
        (_draw_soccer_field, 56),
        (_draw_roundabout, 0),
        (_draw_baseball_diamond, 40),
        (_draw_tennis_court, 26),
        (_draw_basketball_court, 20),
    ]
    for draw, radius in large:
        if draw is _draw_roundabout:
            outer = rng.uniform(18, 26)
            spot = canvas.free_spot(outer + 2, region=land)
            if spot:
                draw(canvas, spot[0], spot[1], outer)
            continue
        spot = canvas.free_spot(radius, region=land)
        if spot:
            draw(canvas, spot[0], spot[1], rng.choice((0.0, np.pi / 2)) + rng.normal(0.0, 0.1))
    tank_spot = canvas.free_spot(34, region=land)
    if tank_spot:
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                if rng.random() < 0.8:
                    _draw_storage_tank(canvas, tank_spot[0] + 22 * dx, tank_spot[1] + 22 * dy, rng.uniform(6, 9))
    for draw, radius, count in (
        (_draw_plane, 23, (2, 4)),
        (_draw_helicopter, 15, (1, 3)),
        (_draw_swimming_pool, 11, (2, 6)),
        (_draw_large_vehicle, 10, (4, 9)),
    ):
        for _ in range(rng.integers(*count)):
            spot = canvas.free_spot(radius, region=land)
            if spot:
                draw(canvas, spot[0], spot[1], angle())
    for _ in range(rng.integers(20, 40)):
        horizontal, position = roads[rng.integers(len(roads))]
        if rng.random() < 0.6:
            along = rng.uniform(0, width if horizontal else height)
            offset = position + rng.choice((-2.5, 2.5))
            x, y = (along, offset) if horizontal else (offset, along)
            if land[int(min(y, height - 1)), int(min(x, width - 1))] and canvas.claim(x, y, 4):
                _draw_small_vehicle(canvas, x, y, 0.0 if horizontal else np.pi / 2)
        else:
            spot = canvas.free_spot(5, region=land)
            if spot:
                _draw_small_vehicle(canvas, spot[0], spot[1], angle())
    return canvas.image, canvas.label


def generate_demo_dataset(root, num_train=4, num_val=2, size=(512, 512), seed=0):
    """Write a synthetic data set in the iSAID layout.

    Files: ``root/{train,val}/images/<name>.png`` and
    ``root/{train,val}/masks/<name>_instance_color_RGB.png``, with names ``demo_<split>_0000``...

    Args:
        root: output folder (created).
        num_train: images in ``train``.
        num_val: images in ``val``.
        size: ``(H, W)`` of every image, each at least 32.
        seed: the same seed writes the same bytes.

    Returns:
        dict: ``{'train': (image_dir, mask_dir), 'val': (image_dir, mask_dir)}``.

    Raises:
        ValueError: ``size`` is smaller than 32x32.
    """
    if len(size) != 2 or min(size) < 32:
        raise ValueError('demo images must be at least 32x32 pixels, got size=%r' % (tuple(size),))
    palette = np.asarray(COLOR_MAP, dtype=np.uint8)
    folders = {}
    for split, count in (('train', num_train), ('val', num_val)):
        image_dir = os.path.join(root, split, 'images')
        mask_dir = os.path.join(root, split, 'masks')
        os.makedirs(image_dir, exist_ok=True)
        os.makedirs(mask_dir, exist_ok=True)
        for index in range(count):
            rng = np.random.default_rng([seed, _SPLIT_CODES[split], index])
            image, label = render_sample(rng, size)
            name = 'demo_%s_%04d' % (split, index)
            Image.fromarray(image).save(os.path.join(image_dir, name + '.png'), compress_level=1)
            Image.fromarray(palette[label]).save(os.path.join(mask_dir, name + COLOR_MASK_SUFFIX), compress_level=1)
        folders[split] = (image_dir, mask_dir)
    return folders


def parse_args(argv=None):
    """Parse ``argv`` (default ``sys.argv[1:]``) into an ``argparse.Namespace``."""
    parser = argparse.ArgumentParser(
        description='Write a seeded synthetic iSAID-format data set (images + colour masks).',
        epilog='example: python -m data.demo --out ./demo_isaid --num-train 8 --num-val 4 --size 512 512',
    )
    parser.add_argument('--out', required=True, help='output folder; gets train/ and val/ subfolders')
    parser.add_argument('--num-train', type=int, default=8, help='number of training images (default 8)')
    parser.add_argument('--num-val', type=int, default=4, help='number of validation images (default 4)')
    add_size_option(parser, '--size', (512, 512), 'image height and width (default 512 512)')
    parser.add_argument('--seed', type=int, default=0, help='random seed (default 0)')
    return parser.parse_args(argv)


def main(argv=None):
    """Write the demo data set and print each split's ``image_dir`` and ``mask_dir``."""
    args = parse_args(argv)
    configure_logging()
    folders = generate_demo_dataset(args.out, args.num_train, args.num_val, tuple(args.size), args.seed)
    for split, (image_dir, mask_dir) in folders.items():
        print('%s: image_dir=%s mask_dir=%s' % (split, image_dir, mask_dir))


if __name__ == '__main__':
    main()
