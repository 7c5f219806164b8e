"""Template context for the measured side of the Grad-CAM section: localisation and faithfulness.

Reads ``models[i].cam.localisation`` and ``models[i].cam.faithfulness`` (docs/report-schema.md)
and formats them; computes nothing. A snapshot without these keys gives empty tables, which the
template shows as one "not run" line.
"""

from __future__ import annotations

from medaudit.report.format import Footnotes, fmt_kn, fmt_p


def _k_label(k: str) -> str:
    try:
        return f"{float(k):.0%}"
    except (TypeError, ValueError):
        return str(k)


def localisation_context(models: list[dict]) -> dict:
    """Rows of the localisation table (per model and class) and of the paired comparisons.

    Parameters
    ----------
    models : list of dict
        The snapshot's ``models``.

    Returns
    -------
    dict
        ``{"rows", "pairs", "notes", "source", "available"}``; ``rows`` are per (model, class)
        with ``pointing`` and ``energy`` cells, ``pairs`` per (model A, model B, class) with the
        hit-rate difference, McNemar p and the energy difference.
    """
    notes = Footnotes()
    rows, pairs, source = [], [], None
    for i, m in enumerate(models):
        loc = (m.get("cam") or {}).get("localisation")
        if not isinstance(loc, dict):
            continue
        source = source or loc.get("source")
        key = f"models.{i}.cam.localisation"
        classes = list((loc.get("per_class") or {}).items()) + [("all lesion images", loc.get("overall") or {})]
        for c, r in classes:
            where = f"{key}.per_class.{c}" if c != "all lesion images" else f"{key}.overall"
            rows.append({"model": m.get("name"), "cls": c, "n": r.get("n"), "total": c == "all lesion images",
                         "pointing": notes.metric(r.get("pointing_game"), f"{where}.pointing_game"),
                         "kn": fmt_kn(r.get("pointing_game")),
                         "energy": notes.metric(r.get("energy_inside"), f"{where}.energy_inside")})
        for other, p in (loc.get("paired") or {}).items():
            for c, r in list((p.get("per_class") or {}).items()) + [("all lesion images", p.get("overall") or {})]:
                pg = r.get("pointing_game") or {}
                diff = pg.get("diff")
                pairs.append({"a": m.get("name"), "b": other, "cls": c, "n": r.get("n"),
                              "hit_diff": "undefined" if diff is None else f"{diff:+.0%}",
                              "p": fmt_p(pg.get("p_value")), "discordant": f"{pg.get('b10', 0)} vs {pg.get('b01', 0)}",
                              "energy": notes.metric(r.get("energy_inside"), f"{key}.paired.{other}")})
    return {"rows": rows, "pairs": pairs, "notes": notes.reasons, "source": source, "available": bool(rows)}


def faithfulness_context(models: list[dict]) -> dict:
    """Rows of the faithfulness table: per model and removed share k, the drop vs a random map's.

    Parameters
    ----------
    models : list of dict

    Returns
    -------
    dict
        ``{"rows", "notes", "available"}``; each row has ``model``, ``k`` ("20%"), ``n`` and cells
        ``drop``, ``random``, ``difference``, and ``flag`` when the difference's interval does
        not lie above 0 (the map is no better than a random one at this k).
    """
    notes = Footnotes()
    rows = []
    for i, m in enumerate(models):
        f = (m.get("cam") or {}).get("faithfulness")
        if not isinstance(f, dict):
            continue
        key = f"models.{i}.cam.faithfulness"
        for k in (f.get("drop") or {}):
            d = (f.get("difference") or {}).get(k) or {}
            lo = d.get("ci_low")
            rows.append({"model": m.get("name"), "k": _k_label(k), "n": f.get("n"),
                         "drop": notes.metric((f.get("drop") or {}).get(k), f"{key}.drop.{k}"),
                         "random": notes.metric((f.get("random_drop") or {}).get(k), f"{key}.random_drop.{k}"),
                         "difference": notes.metric(d, f"{key}.difference.{k}"),
                         "flag": d.get("value") is not None and (lo is None or lo <= 0)})
    return {"rows": rows, "notes": notes.reasons, "available": bool(rows)}
