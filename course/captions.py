"""An offline caption data set: each 8x8 digit described by its class and three measured attributes.

"a thick slanted seven": the digit's name comes from its label; the words come from measurements
of the image itself, so every caption (and every generated sample's agreement with its caption)
can be checked by the functions below.

Measurements, on images (N, 1, H, W) in [-1, 1] (any H = W >= 8 is area-pooled to 8x8 first), with
the pixel "ink" p = (x + 1) / 2 in [0, 1] as weights and (r, c) the pixel's row (down) and column:

- ``ink(x)``: the mean of p over the pixels (how much of the frame is inked: thin or thick strokes);
- ``slant(x)``: the shear -cov_p(c, r) / var_p(r): how far the ink moves to the right per row
  going up (positive: the top leans right, as italic script);
- ``size(x)``: the radius of gyration sqrt(var_p(r) + var_p(c)) in pixels (small or large).

Words are *relative to the digit's class* (a thin eight has more ink than a thick one; sevens lean
right): each measurement is standardised with its class's mean and standard deviation over all
1,797 bundled digits (``class_statistics``), z = (m - mean_y) / std_y, and

- z < -0.43 gives the first word of the pair (thin, upright, small), z > +0.43 the second (thick,
  slanted, large), and |z| <= 0.43 no word (0.43 is the tercile of a standard normal: about a third
  of the digits gets each word);
- a sample *agrees* with a word when its z has that word's sign (``attribute_matches``): a "thick"
  sample has more ink than the average digit of its class.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from course.digits import load_digits

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
ATTRIBUTES = ("ink", "slant", "size")
WORDS = {"ink": ("thin", "thick"), "slant": ("upright", "slanted"), "size": ("small", "large")}
Z_WORD = 0.43  # |z| above this gets a word (standard-normal terciles)
PAD, UNK = "<pad>", "<unk>"


def _ink_weights(x: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) in [-1, 1] -> ink p = (x + 1) / 2 in [0, 1] on the 8x8 grid: (N, 8, 8)."""
    x = x.detach().float().cpu().clamp(-1, 1)
    if x.shape[1] != 1:
        x = x.mean(1, keepdim=True)
    if x.shape[-1] != 8:
        x = F.adaptive_avg_pool2d(x, 8)
    return (x[:, 0] + 1) / 2


def _moments(x: torch.Tensor):
    """Ink-weighted second moments of the pixel coordinates: var(r), var(c), cov(r, c), each (N,)."""
    p = _ink_weights(x)
    r = torch.arange(8.0).view(1, 8, 1)
    c = torch.arange(8.0).view(1, 1, 8)
    mass = p.sum((1, 2)).clamp(min=1e-6)
    mean_r, mean_c = (p * r).sum((1, 2)) / mass, (p * c).sum((1, 2)) / mass
    dr, dc = r - mean_r[:, None, None], c - mean_c[:, None, None]  # (N, 8, 8)
    return ((p * dr ** 2).sum((1, 2)) / mass, (p * dc ** 2).sum((1, 2)) / mass, (p * dr * dc).sum((1, 2)) / mass)


def ink(x: torch.Tensor) -> torch.Tensor:
    """Mean ink (x + 1) / 2 over the 8x8 pixels: (N,) in [0, 1]."""
    return _ink_weights(x).mean((1, 2))


def slant(x: torch.Tensor) -> torch.Tensor:
    """Shear of the ink, -cov(c, r) / var(r): columns moved right per row up, (N,)."""
    var_r, _, cov = _moments(x)
    return -cov / var_r.clamp(min=1e-6)


def size(x: torch.Tensor) -> torch.Tensor:
    """Radius of gyration of the ink, sqrt(var(r) + var(c)) in 8x8 pixels: (N,)."""
    var_r, var_c, _ = _moments(x)
    return (var_r + var_c).sqrt()


MEASURES = {"ink": ink, "slant": slant, "size": size}


def measure(x: torch.Tensor) -> torch.Tensor:
    """All three measurements, columns in the order of ``ATTRIBUTES``: (N, 3)."""
    return torch.stack([MEASURES[a](x) for a in ATTRIBUTES], dim=1)


@functools.lru_cache(maxsize=1)
def class_statistics() -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class mean and standard deviation of each measurement over all 1,797 bundled digits:
    two (10, 3) tensors (rows: digit, columns: ``ATTRIBUTES``)."""
    x, y = load_digits(8)
    m = measure(x)
    means = torch.stack([m[y == k].mean(0) for k in range(10)])
    stds = torch.stack([m[y == k].std(0) for k in range(10)])
    return means, stds


def zscores(x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Measurements standardised within each image's class: (N, 3)."""
    means, stds = class_statistics()
    labels = labels.cpu()
    return (measure(x) - means[labels]) / stds[labels]


def words_from_z(z: torch.Tensor, threshold: float = Z_WORD) -> list[dict[str, str]]:
    """The attribute words of each row of z (N, 3): {attribute: word} for |z| > threshold."""
    out = []
    for row in z.tolist():
        words = {}
        for a, v in zip(ATTRIBUTES, row):
            if v < -threshold:
                words[a] = WORDS[a][0]
            elif v > threshold:
                words[a] = WORDS[a][1]
        out.append(words)
    return out


def make_caption(label: int, words: dict[str, str]) -> str:
    """'a thick slanted seven': the words in the order ink, slant, size, then the digit's name."""
    parts = [words[a] for a in ATTRIBUTES if a in words] + [DIGIT_NAMES[int(label)]]
    article = "an" if parts[0] in ("eight", "upright") else "a"  # the words said with a vowel sound
    return " ".join([article, *parts])


def caption_images(x: torch.Tensor, labels: torch.Tensor, threshold: float = Z_WORD) -> list[str]:
    """A caption for each image, from its label and its measured attributes."""
    return [make_caption(int(k), w) for k, w in zip(labels.tolist(), words_from_z(zscores(x, labels), threshold))]


def caption_dataset(size: int = 8, split: str = "all", seed: int = 0, threshold: float = Z_WORD):
    """``(images, labels, captions)``: the digits of ``course.digits.load_digits(size, split, seed=seed)``
    and one caption (str) per image, made from the 8x8 measurements."""
    x, y = load_digits(size, split=split, seed=seed)
    return x, y, caption_images(x, y, threshold)


def parse_caption(caption: str) -> tuple[int | None, dict[str, str]]:
    """(digit or None, {attribute: word}) read back from a caption; unknown words are ignored."""
    digit, words = None, {}
    for w in caption.split():
        if w in DIGIT_NAMES:
            digit = DIGIT_NAMES.index(w)
        for a, pair in WORDS.items():
            if w in pair:
                words[a] = w
    return digit, words


def attribute_matches(x: torch.Tensor, captions: list[str], attribute: str) -> torch.Tensor:
    """Per image: 1.0 when its measured ``attribute`` agrees with its caption's word (z on that word's
    side of the class mean), 0.0 when not, nan when the caption has no word for it (or no digit). (N,)"""
    parsed = [parse_caption(c) for c in captions]
    labels = torch.tensor([d if d is not None else 0 for d, _ in parsed])
    z = zscores(x, labels)[:, ATTRIBUTES.index(attribute)]
    out = torch.full((len(captions),), float("nan"))
    for i, (d, words) in enumerate(parsed):
        if d is not None and attribute in words:
            wants_high = words[attribute] == WORDS[attribute][1]
            out[i] = float((z[i] > 0) == wants_high)
    return out


def all_words() -> list[str]:
    """Every word a caption can contain."""
    return ["a", "an", *(w for a in ATTRIBUTES for w in WORDS[a]), *DIGIT_NAMES]


def build_vocab(captions) -> dict[str, int]:
    """word -> id: 0 is the padding token "<pad>", 1 "<unk>", then the captions' words sorted."""
    words = sorted({w for c in captions for w in c.split()} - {PAD, UNK})
    return {PAD: 0, UNK: 1, **{w: i + 2 for i, w in enumerate(words)}}


VOCAB = build_vocab([" ".join(all_words())])  # the fixed vocabulary of every caption this module makes
MAX_LEN = 6  # the longest caption: "a thick slanted large seven" (5 words), plus one spare


def training_captions(labels: torch.Tensor, words: list[dict[str, str]], p_word: float = 0.3,
                      p_uncond: float = 0.1, generator: torch.Generator | None = None) -> list[str]:
    """Captions for one training batch: each attribute word of ``words`` (from ``words_from_z``) kept
    with probability 1 - p_word (so "a thin seven" also describes thin sevens of any slant and size),
    and the whole caption replaced by the empty caption "" with probability p_uncond (classifier-free
    guidance's null condition, Ho & Salimans 2022)."""
    keep = torch.rand(len(labels), len(ATTRIBUTES), generator=generator) >= p_word  # (B, 3)
    uncond = torch.rand(len(labels), generator=generator) < p_uncond  # (B,)
    out = []
    for i, (label, w) in enumerate(zip(labels.tolist(), words)):
        kept = {a: w[a] for j, a in enumerate(ATTRIBUTES) if a in w and keep[i, j]}
        out.append("" if uncond[i] else make_caption(label, kept))
    return out
