"""How well MTCNN finds the synthetic faces, and how fast they render.

Draws random identities (traits uniform, half female), renders one face each,
runs facenet-pytorch's MTCNN (image_size=160, margin=0, CPU) on every image and
prints a table: draws, detected %, median detection probability, ms per render
(wall and CPU). Then the detection rate by skin-tone third and by sex, and how
the shared `size` trait shows in what MTCNN finds: the box aspect (width /
height), and the box width in eye distances (what survives in the square crop
a model sees).

    python benchmarks/synth_face_detection.py --draws 300 --seed 0
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.stats import spearmanr

from fvmatch.synth.faces import render_face
from fvmatch.synth.identity import uniform_face_traits

IMAGE_SIZE = 256
BATCH = 50
# A detection counts only if its box centre lies this close to the frame
# centre (in image sides): the faces are drawn there, and a box elsewhere
# (on the shirt or background) is a false detection, not a found face.
MAX_BOX_OFFSET = 0.2



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from facenet_pytorch import MTCNN  # slow import, after argument parsing

    rng = np.random.default_rng(args.seed)
    traits = [uniform_face_traits(rng) for _ in range(args.draws)]
    start, start_cpu = time.perf_counter(), time.process_time()
    images = [render_face(t, rng, IMAGE_SIZE) for t in traits]
    ms_per_render = (time.perf_counter() - start) / args.draws * 1000.0
    # CPU time too: wall time inflates when other jobs share the cores.
    cpu_ms_per_render = (time.process_time() - start_cpu) / args.draws * 1000.0

    mtcnn = MTCNN(image_size=160, margin=0, keep_all=False, device="cpu")
    found = np.zeros(args.draws, dtype=bool)
    probs = np.full(args.draws, np.nan)
    aspects = np.full(args.draws, np.nan)
    widths_in_eyes = np.full(args.draws, np.nan)
    centre = IMAGE_SIZE / 2
    for first in range(0, args.draws, BATCH):
        # detect() takes a batch of same-size images and answers None for a
        # face-less one; it is MTCNN's cropping call that fails on such a batch.
        batch_boxes, batch_probs, batch_landmarks = mtcnn.detect(images[first : first + BATCH], landmarks=True)
        for i, (boxes, box_probs, landmarks) in enumerate(zip(batch_boxes, batch_probs, batch_landmarks), first):
            if boxes is None:
                continue
            x0, y0, x1, y1 = boxes[0]  # the largest box, which MTCNN(keep_all=False) would crop
            offset = max(abs((x0 + x1) / 2 - centre), abs((y0 + y1) / 2 - centre)) / IMAGE_SIZE
            if offset <= MAX_BOX_OFFSET:
                found[i] = True
                probs[i] = box_probs[0]
                aspects[i] = (x1 - x0) / (y1 - y0)
                widths_in_eyes[i] = (x1 - x0) / np.linalg.norm(landmarks[0][1] - landmarks[0][0])

    print(f"{'draws':>6} {'detected %':>11} {'median prob':>12} {'ms/render':>10} {'cpu ms/render':>14}")
    print(
        f"{args.draws:>6} {100 * found.mean():>11.1f} {np.nanmedian(probs):>12.4f}"
        f" {ms_per_render:>10.2f} {cpu_ms_per_render:>14.2f}"
    )

    tone = np.array([t.tone for t in traits])
    female = np.array([t.female for t in traits])
    groups = {
        "tone < 1/3": tone < 1 / 3,
        "tone 1/3..2/3": (tone >= 1 / 3) & (tone < 2 / 3),
        "tone >= 2/3": tone >= 2 / 3,
        "female": female,
        "male": ~female,
    }
    print(f"\n{'group':<14} {'draws':>6} {'detected %':>11}")
    for name, members in groups.items():
        print(f"{name:<14} {members.sum():>6} {100 * found[members].mean():>11.1f}")

    size_trait = np.array([t.size for t in traits])
    print(f"\nSpearman correlation with the size trait, over {found.sum()} detected faces:")
    for name, values in (("box width / height", aspects), ("box width / eye distance", widths_in_eyes)):
        print(f"  {name:<26} {spearmanr(size_trait[found], values[found]).statistic:.3f}")


if __name__ == "__main__":
    main()
