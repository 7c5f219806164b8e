"""Plain-language findings from the measured Grad-CAM evidence (``models[i].cam``), never overstated.

Same finding shape as :mod:`medaudit.findings` (``{"level", "text", "model"}``). Claims rest on
intervals: a map is called "no better than random" only when the paired difference's interval
does not lie above 0, and "better than random" only when it does; a model "points inside the
lesion more often" only when the exact McNemar test is below :data:`medaudit.findings.ALPHA`.
Blocks without an interval (too few images) give no claim.
"""

from __future__ import annotations

from medaudit.findings import ALPHA

# The share removed that the faithfulness finding quotes (the middle of FAITHFULNESS_K).
QUOTED_K = "0.2"


def _num(v: dict | None, pct: bool = False) -> str:
    if not v or v.get("value") is None:
        return "undefined"
    f = (lambda x: f"{100 * x:.0f}%") if pct else (lambda x: f"{x:.2f}")
    text = f(v["value"])
    if v.get("ci_low") is not None and v.get("ci_high") is not None:
        text += f" [{f(v['ci_low'])}–{f(v['ci_high'])}]"
    return text


def _faithfulness(name: str, f: dict) -> list[dict]:
    keys = list(f.get("difference") or {})
    if not keys:
        return []
    k = QUOTED_K if QUOTED_K in keys else keys[len(keys) // 2]
    d = f["difference"][k]
    if d.get("value") is None or d.get("ci_low") is None:
        return []
    share = f"{float(k):.0%}"
    nums = (f"removing the top {share} of the map costs {_num(f['drop'][k])} of the predicted class's probability, "
            f"a random {share} costs {_num(f['random_drop'][k])} (paired difference {_num(d)}, {f.get('n')} gallery "
            "images)")
    if d["ci_low"] <= 0:
        return [{"level": "warning", "model": name,
                 "text": f"{name}: the Grad-CAM maps are no better than random at marking what the model uses: {nums}."}]
    return [{"level": "info", "model": name, "text": f"{name}: the Grad-CAM maps mark evidence the model uses: {nums}."}]


def _localisation(name: str, loc: dict) -> list[dict]:
    out = []
    overall = loc.get("overall") or {}
    pg, en = overall.get("pointing_game") or {}, overall.get("energy_inside") or {}
    if pg.get("value") is None:
        return out
    area = overall.get("lesion_area")
    text = (f"{name} points inside the lesion on {_num(pg, pct=True)} of {pg.get('n')} lesion images; "
            f"{_num(en)} of the map's energy lies inside the lesion")
    if area is not None:
        text += f" (an even map would put {area:.2f} there)"
    level = "info"
    if area is not None and en.get("ci_high") is not None and en["ci_high"] <= area:
        level, text = "warning", text + ": the maps are not concentrated on the lesions"
    out.append({"level": level, "model": name, "text": text + "."})
    for other, p in (loc.get("paired") or {}).items():
        test = (p.get("overall") or {}).get("pointing_game") or {}
        if test.get("p_value") is None or test.get("diff") is None or test["p_value"] >= ALPHA:
            continue
        better, worse = (name, other) if test["diff"] > 0 else (other, name)
        p_txt = "< 0.001" if test["p_value"] < 0.001 else f"= {test['p_value']:.3f}"
        out.append({"level": "info", "model": None,
                    "text": f"{better} points inside the lesion more often than {worse} on the same images "
                            f"({abs(test['diff']):.0%} more; McNemar p {p_txt}, {test.get('n_discordant')} "
                            "discordant images)."})
    return out


def cam_findings(models: list[dict]) -> list[dict]:
    """Findings about the CAMs of every model: faithfulness, then localisation and paired tests.

    Parameters
    ----------
    models : list of dict
        The snapshot's ``models``.

    Returns
    -------
    list of dict
    """
    out: list[dict] = []
    for m in models:
        cam = m.get("cam") or {}
        if isinstance(cam.get("faithfulness"), dict):
            out += _faithfulness(m.get("name"), cam["faithfulness"])
        if isinstance(cam.get("localisation"), dict):
            out += _localisation(m.get("name"), cam["localisation"])
    return out
