"""`python -m adlib`: anomaly detection on your own images (fit on normals, then score). See adlib/own_images.py
for the API behind it and README.md ("Your own images") for a worked example."""
from __future__ import annotations

import argparse
import json
import sys
import time

DESCRIPTION = """\
Anomaly detection on your own images, in two steps:

  1. fit    learn what normal looks like from a folder of normal images (and, optionally, choose the decision
            threshold on a validation folder); writes a model directory
  2. score  score new images with that model: one anomaly score per image (higher = more anomalous), a
            prediction at the threshold, anomaly maps; or, on a labelled test folder, the metrics

Images: PNG, JPEG or NPZ (an array of images), grayscale or RGB, any size (resized to --size at fit).
Run `python -m adlib fit --help` and `python -m adlib score --help` for the options."""

FIT_EPILOG = """\
examples:
  python -m adlib fit --normal xrays/normal --out model/
  python -m adlib fit --normal xrays/normal --val xrays/val --method patchcore --size 64 --out model/
  python -m adlib fit --normal xrays/normal --val xrays/val --method conv_ae --set steps=500 --out ae_model/

--normal: folders (read with their subfolders) or files of normal images only. --val: a folder with the
subfolders normal/ and anomalous/; its scores choose the threshold (Youden's J: the score that best separates
the two, maximising sensitivity + specificity) and are stored in the model. Without --val the model scores
images but predicts no label.

--method: patchcore (default: patch features of EfficientNet-Lite0 with the ImageNet weights shipped with its
pip package, seen at 128 px or the image size when larger; a memory bank of 10 % of the normal patches; score =
distance to the nearest one; change any of it with --set) or another detector that can be
saved: every reconstruction detector (conv_ae, vae, ssim_ae, memae, f_anogan, egbad, salad, ganomaly,
skip_ganomaly, ccb_aae), anogan, deep_geo, simplenet. A name it cannot save is refused with the list.

--set KEY=VALUE passes a constructor setting of the method (VALUE read as JSON when it parses, else as text),
e.g. --set coreset_fraction=0.1, --set weights=random, --set 'layers=["stage5_s16"]', --set steps=2000.

Writes MODEL_DIR/weights.pt (tensors only) and MODEL_DIR/config.json (method, settings, size, channels,
threshold, validation scores, SHA-256 of the weights), both at once: an interrupted fit leaves no half model.
Computes with one CPU thread (the project's rule: identical numbers on every machine); ADLIB_THREADS=N uses N."""

SCORE_EPILOG = """\
examples:
  python -m adlib score --model model/ new_images/ one_more.png --out scores.csv
  python -m adlib score --model model/ new_images/ --out scores.csv --maps maps/
  python -m adlib score --model model/ --test xrays/test --out scores.csv --metrics metrics.json

IMAGES: files or folders (read with their subfolders). Each is resized to the model's size and converted to
its channel count. The CSV has one row per image: file, score, prediction ("anomalous" when score >= the
model's threshold, "normal" otherwise, empty for a model fitted without --val) and, with --test, the true
label. Without --out the CSV goes to standard output (with --test: the metrics do).

--test DIR: a folder with normal/ and anomalous/ subfolders; prints AUROC (with a bootstrap 95 % CI), AP and
F1/ACC/SEN/SPE at the threshold chosen on the validation folder given at fit (adlib.metrics.evaluate_scores).
These images are test data: they are only scored, never used to choose anything.

--maps DIR: one PNG per image, its anomaly map over the image (one colour scale for all images of the call,
recorded in DIR/maps.json; raw maps in DIR/maps.npz), for methods that have maps."""


def _setting(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r} (e.g. --set steps=500)")
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    return key.strip(), parsed


def _size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 8:
        raise argparse.ArgumentTypeError(f"--size must be a whole number of pixels, 8 or more (e.g. 64), got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m adlib", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="{fit,score}")

    fit = commands.add_parser("fit", help="fit a detector on normal images and save it",
                              description="Fit an anomaly detector on normal images and save it to a model directory.",
                              epilog=FIT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    fit.add_argument("--normal", nargs="+", required=True, metavar="DIR",
                     help="folders or files of normal images to fit on")
    fit.add_argument("--out", required=True, metavar="MODEL_DIR",
                     help="model directory to write (an earlier model directory there is replaced)")
    fit.add_argument("--val", metavar="DIR", help="validation folder with normal/ and anomalous/ subfolders: chooses "
                     "the threshold")
    fit.add_argument("--method", default="patchcore", help="detector to fit (default: patchcore)")
    fit.add_argument("--size", type=_size, default=64, help="images are resized to SIZE x SIZE pixels (default: 64)")
    fit.add_argument("--channels", type=int, choices=(1, 3), help="convert every image to 1 (grayscale) or 3 (RGB) "
                     "channels (default: the images' own count; needed when a folder mixes both)")
    fit.add_argument("--set", dest="settings", type=_setting, action="append", default=[], metavar="KEY=VALUE",
                     help="a setting of the method's constructor (repeatable)")
    fit.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    fit.add_argument("--quiet", action="store_true", help="no progress bars")

    score = commands.add_parser("score", help="score images with a saved model",
                                description="Score images with a model directory written by `fit`.",
                                epilog=SCORE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    score.add_argument("--model", required=True, metavar="MODEL_DIR", help="model directory written by `fit`")
    score.add_argument("images", nargs="*", metavar="IMAGES", help="image files or folders to score")
    score.add_argument("--test", metavar="DIR", help="a labelled folder (normal/ and anomalous/): score it and "
                       "report the metrics")
    score.add_argument("--out", metavar="CSV", help="write the scores here (default: standard output)")
    score.add_argument("--maps", metavar="DIR", help="write one anomaly-map PNG per image into DIR")
    score.add_argument("--metrics", metavar="JSON", help="with --test: also write the metrics to this JSON file")
    score.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    score.add_argument("--quiet", action="store_true", help="no progress bars")
    score.set_defaults(subparser=score)
    return parser


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_fit(args) -> None:
    from . import own_images

    t0 = time.perf_counter()
    model = own_images.fit(args.normal, method=args.method, out=args.out, val=args.val, size=args.size,
                           channels=args.channels, kwargs=dict(args.settings), device=args.device,
                           progress=not args.quiet)
    config = model.config
    seconds = config["seconds"]
    _say(f"fitted {config['method']} on {config['training_images']['n']} normal images "
         f"({config['size']} x {config['size']} px, {config['channels']} channel(s)): read {seconds['read']:.1f} s, "
         f"fit {seconds['fit']:.1f} s, {time.perf_counter() - t0:.1f} s in all")
    val = config.get("validation")
    if val:
        _say(f"threshold {config['threshold']:.6g} chosen on {val['normal']} normal + {val['anomalous']} anomalous "
             f"validation images (Youden's J; validation AUROC {val['AUROC']:.3f})")
    else:
        _say("no --val: the model scores images but predicts no label (no threshold)")
    _say(f"model written to {args.out}")


def run_score(args) -> None:
    from . import own_images

    parser = args.subparser
    if bool(args.images) == bool(args.test):
        parser.error("give the images to score (files or folders) or --test DIR, not both and not neither")
    if args.metrics and not args.test:
        parser.error("--metrics needs --test DIR (metrics need labelled images)")
    model = own_images.load_model(args.model, device=args.device, progress=not args.quiet)
    if args.maps and not model.detector.supports("anomaly_maps"):
        raise NotImplementedError(f"{model.method} gives no anomaly maps; drop --maps")
    t0 = time.perf_counter()
    if args.test:
        metrics, images, scores, maps = own_images.evaluate_folder(model, args.test, maps=bool(args.maps))
    else:
        images = own_images.load_images(args.images, size=model.size, channels=model.channels, split="test")
        scores, maps = own_images.score_images(model.detector, images, maps=bool(args.maps))
    seconds = time.perf_counter() - t0
    _say(f"scored {len(images)} images with {model.method} in {seconds:.1f} s" + (" (with maps)" if args.maps else ""))
    if images.meta["converted"]:
        _say(f"note: {images.meta['converted']} images were converted to the model's {model.channels} channel(s)")
    map_files = None
    if args.maps:
        map_files = own_images.write_maps(args.maps, images, maps)
        _say(f"anomaly maps written to {args.maps}")
    threshold = model.threshold
    if args.out:
        own_images.write_scores_csv(args.out, images, scores, threshold, with_labels=bool(args.test),
                                    map_files=map_files)
        _say(f"scores written to {args.out}")
    elif not args.test:
        sys.stdout.write(own_images.scores_csv_text(images, scores, threshold, map_files=map_files))
    if threshold is None:
        _say("this model has no threshold (fitted without --val): the prediction column is empty")
    if args.test:
        print(format_metrics(metrics))
        if args.metrics:
            from .io import atomic_write_text

            atomic_write_text(args.metrics, json.dumps(metrics, indent=2, default=float) + "\n")
            _say(f"metrics written to {args.metrics}")


def format_metrics(metrics: dict) -> str:
    ci = (f" (95 % CI {metrics['AUROC_ci_low']:.3f}-{metrics['AUROC_ci_high']:.3f})"
          if "AUROC_ci_low" in metrics else "")
    lines = [f"test images: {metrics['n_test_normal']} normal, {metrics['n_test_anomalous']} anomalous",
             f"AUROC {metrics['AUROC']:.3f}{ci}", f"AP    {metrics['AP']:.3f}"]
    if metrics.get("threshold") is not None:
        lines.append(f"at the validation threshold {metrics['threshold']:.6g} ({metrics['threshold_rule']}): "
                     f"F1 {metrics['F1']:.3f}  ACC {metrics['ACC']:.3f}  SEN {metrics['SEN']:.3f}  "
                     f"SPE {metrics['SPE']:.3f}" + ("  (degenerate: one class for almost every image)"
                                                    if metrics.get("degenerate") else ""))
    else:
        lines.append(metrics.get("note", ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .persistence import ModelDirectoryError
    from .own_images import ImageFolderError
    from .training import set_cpu_threads

    try:
        set_cpu_threads()
        if args.command == "fit":
            run_fit(args)
        else:
            run_score(args)
    except (ImageFolderError, ModelDirectoryError, FileExistsError, NotImplementedError, ValueError) as err:
        _say(f"error: {err}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
