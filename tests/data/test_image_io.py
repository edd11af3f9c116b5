"""open_image: 16-bit / 32-bit / float images scaled to 8 bits (not clipped), EXIF orientation applied."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest

from dfine.data.image_io import exif_orientation, open_image, oriented_size


def _ramp(dtype, top) -> np.ndarray:
    return (np.linspace(0, top, 40 * 30).reshape(30, 40)).astype(dtype)


@pytest.mark.parametrize("fmt", ["png", "tiff"])
def test_16_bit_is_scaled_not_saturated(tmp_path, fmt):
    values = _ramp(np.uint16, 65535)
    path = tmp_path / f"deep.{fmt}"
    PIL.Image.fromarray(values).save(path)
    with PIL.Image.open(path) as raw:
        assert raw.mode in ("I;16", "I")  # PIL would clip this to 255 with convert("RGB")
    image = open_image(path)
    assert image.mode == "RGB" and image.size == (40, 30)
    pixels = np.asarray(image)
    assert np.array_equal(pixels[..., 0], pixels[..., 2])
    np.testing.assert_allclose(pixels[..., 0], values / 257.0, atol=0.51)
    assert (pixels == 255).mean() < 0.01


def test_32_bit_and_float_images(tmp_path):
    big = _ramp(np.int32, 2 ** 31 - 1)
    PIL.Image.fromarray(big, mode="I").save(tmp_path / "i32.tiff")
    np.testing.assert_allclose(np.asarray(open_image(tmp_path / "i32.tiff"))[..., 1], big / (2 ** 31 - 1) * 255, atol=0.51)
    unit = _ramp(np.float32, 1.0)
    PIL.Image.fromarray(unit, mode="F").save(tmp_path / "f.tiff")
    np.testing.assert_allclose(np.asarray(open_image(tmp_path / "f.tiff"))[..., 0], unit * 255, atol=0.51)


def test_8_bit_rgb_is_unchanged(tmp_path):
    values = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    PIL.Image.fromarray(values).save(tmp_path / "rgb.png")
    assert np.array_equal(np.asarray(open_image(tmp_path / "rgb.png")), values)
    PIL.Image.fromarray(values[..., 0]).save(tmp_path / "grey.png")
    assert np.array_equal(np.asarray(open_image(tmp_path / "grey.png"))[..., 2], values[..., 0])


def test_exif_orientation_is_applied(tmp_path):
    stored = np.zeros((30, 40, 3), dtype=np.uint8)
    stored[:5, :5] = 255  # a white corner, top-left as stored
    exif = PIL.Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90 degrees clockwise
    path = tmp_path / "phone.jpg"
    PIL.Image.fromarray(stored).save(path, exif=exif, quality=100)
    with PIL.Image.open(path) as f:
        assert exif_orientation(f) == 6 and oriented_size(f.size, 6) == (30, 40)
    shown = np.asarray(open_image(path))
    assert shown.shape == (40, 30, 3) and shown[:5, -5:].mean() > 200 and shown[:5, :5].mean() < 50
    assert open_image(path, exif=False).size == (40, 30)


def test_a_complete_jpeg_with_zero_padding_after_its_end_is_not_cut_short(tmp_path):
    """experiencor/kangaroo's 00021.jpg ends with 1,188 zero bytes after its end marker: data check left it out
    as cut short, though every decoder reads it. Padding is no tail; a file cut short is still found."""
    from dfine.data.image_io import tail_complete
    PIL.Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(
        tmp_path / "a.jpg", quality=90)
    whole = (tmp_path / "a.jpg").read_bytes()
    (tmp_path / "padded.jpg").write_bytes(whole + bytes(1188))
    (tmp_path / "trailer.jpg").write_bytes(whole + b"SEFT" * 100)  # a camera's trailer of 400 bytes
    (tmp_path / "cut.jpg").write_bytes(whole[:len(whole) // 2])
    (tmp_path / "cut_padded.jpg").write_bytes(whole[:len(whole) // 2] + bytes(5000))
    assert [tail_complete(tmp_path / f"{n}.jpg", "JPEG") for n in ("a", "padded", "trailer", "cut", "cut_padded")] == [
        True, True, True, False, False]
    with PIL.Image.open(tmp_path / "padded.jpg") as im:
        assert im.size == (64, 64)
