"""Training set-up for the report: a curated table for reviewers, the raw record for the appendix.

``models[i].checkpoint.training`` is the training record written by ``medaudit train``
(keys of :class:`medaudit.train.config.TrainConfig` plus outcomes such as ``epochs_run``,
``best_epoch``, ``val_source``); converted weights carry ``{"source": "converted", ...}``.
The curated table shows the settings that change what a model learned, in a fixed
order; every key stays visible in the appendix.
"""

from __future__ import annotations

from collections.abc import Callable

from medaudit.report.format import flatten, fmt_any

MISSING = "\u2014"  # not in this model's training record


def _init(t: dict) -> str | None:
    if "pretrained" not in t and "finetune" not in t:
        return None
    text = "pretrained" if t.get("pretrained") else "random initialisation"
    if t.get("weights"):
        text += f" from {t['weights']}"
    if t.get("finetune"):
        text += "; " + ("all layers trained" if t["finetune"] == "full" else f"fine-tuning: {t['finetune']}")
    return text


def _input(t: dict) -> str | None:
    if t.get("img_size") is None:
        return None
    text = f"{t['img_size']} px"
    if t.get("in_chans") is not None:
        text += f", {t['in_chans']} channel{'s' if t['in_chans'] != 1 else ''}"
    if t.get("resize"):
        text += f"; resize {t['resize']}" + (f" ({t['interpolation']})" if t.get("interpolation") else "")
    return text


def _loss(t: dict) -> str | None:
    loss = t.get("loss")
    if loss is None:
        return None
    extra = []
    if loss == "focal":
        extra.append(f"\u03b3 = {fmt_any(t.get('focal_gamma'))}")
        if t.get("focal_alpha") is not None:
            extra.append(f"\u03b1 = {fmt_any(t.get('focal_alpha'))}")
    if t.get("label_smoothing"):
        extra.append(f"label smoothing {fmt_any(t['label_smoothing'])}")
    return f"{loss} ({', '.join(extra)})" if extra else str(loss)


def _balancing(t: dict) -> str | None:
    if "class_weights" not in t and "sampler" not in t:
        return None
    cw = str(t.get("class_weights", MISSING))
    used = t.get("class_weights_used")
    if used:
        cw += " (" + ", ".join(f"{float(w):.3g}" for w in used) + ")"
    return f"class weights {cw}; sampler {t.get('sampler', MISSING)}"


def _optimizer(t: dict) -> str | None:
    opt = t.get("optimizer")
    if opt is None:
        return None
    return f"{opt} (momentum {fmt_any(t['momentum'])})" if opt == "sgd" and t.get("momentum") is not None else str(opt)


def _scheduler(t: dict) -> str | None:
    s = t.get("scheduler")
    if s is None:
        return None
    text = str(s)
    if t.get("milestones"):
        text += f" (milestones {fmt_any(t['milestones'])})"
    if t.get("warmup_epochs"):
        text += f", {t['warmup_epochs']} warm-up epochs"
    return text


def _epochs(t: dict) -> str | None:
    run, planned = t.get("epochs_run"), t.get("epochs")
    if run is None and planned is None:
        return None
    text = f"{fmt_any(run) if run is not None else MISSING} / {fmt_any(planned) if planned is not None else MISSING}"
    return text + (" (stopped early)" if t.get("stopped_early") else "")


def _selection(t: dict) -> str | None:
    if t.get("select_by") is None and t.get("best_epoch") is None:
        return None
    text = str(t.get("select_by", MISSING))
    if t.get("best_epoch") is not None:
        text += f"; best epoch {t['best_epoch']}"
        if t.get("best_score") is not None:
            text += f" (score {fmt_any(t['best_score'])})"
    return text


def _validation(t: dict) -> str | None:
    src = t.get("val_source")
    if src is None:
        return None
    text = f"'{src}' split" if src == "val" else str(src)
    if t.get("n_val") is not None:
        text += f", {fmt_any(t['n_val'])} images"
    if t.get("n_train") is not None:
        text += f" (training: {fmt_any(t['n_train'])} from '{t.get('train_split') or 'train'}')"
    return text


def _early(t: dict) -> str | None:
    if "early_stop" not in t:
        return None
    if t["early_stop"] is None:
        return "off"
    return f"after {t['early_stop']} epochs without improvement; stopped early: {fmt_any(t.get('stopped_early'))}"


def _run(t: dict) -> str | None:
    if t.get("seed") is None and t.get("device") is None:
        return None
    return (f"seed {fmt_any(t.get('seed'))}; {t.get('device', MISSING)}"
            f"{', mixed precision (AMP)' if t.get('amp') else ''}")


def _key(k: str) -> Callable[[dict], str | None]:
    return lambda t: fmt_any(t[k]) if k in t else None


CURATED: list[tuple[str, Callable[[dict], str | None]]] = [
    ("Source", lambda t: ("converted weights" + (f" ({t['weights_file']})" if t.get("weights_file") else ""))
     if t.get("source") == "converted" else None),
    ("Architecture", _key("arch")),
    ("Initialisation", _init),
    ("Input", _input),
    ("Loss", _loss),
    ("Class balancing", _balancing),
    ("Optimizer", _optimizer),
    ("Learning rate", _key("lr")),
    ("Weight decay", _key("weight_decay")),
    ("Scheduler", _scheduler),
    ("Epochs run / planned", _epochs),
    ("Batch size", _key("batch_size")),
    ("Augmentation", _key("augment")),
    ("Checkpoint selected by", _selection),
    ("Validation data", _validation),
    ("Early stopping", _early),
    ("Seed, device", _run),
]


def training_rows(trainings: list[dict | None]) -> list[dict]:
    """Curated rows, one value per model; rows no model has are left out.

    Parameters
    ----------
    trainings : list of dict or None
        ``checkpoint.training`` of each model (``None``: no record).

    Returns
    -------
    list of dict
        ``{"label": str, "values": [str, ...]}``; a value absent from one model's
        record is ``"—"``, a model without any record reads ``"not available"``.
    """
    rows = []
    for label, fn in CURATED:
        vals = [fn(t) if t else None for t in trainings]
        if all(v is None for v in vals):
            continue
        rows.append({"label": label, "values": [v if v is not None else (MISSING if t else "not available")
                                                for v, t in zip(vals, trainings, strict=True)]})
    return rows


def all_settings(name: str, training: dict | None) -> dict:
    """Every key of one training record, for the appendix (key order as recorded)."""
    # In a configuration a null means "option not set", not an undefined result.
    return {"name": name, "fields": [(k, "not set" if v is None else fmt_any(v)) for k, v in flatten(training)]
            if training else []}
