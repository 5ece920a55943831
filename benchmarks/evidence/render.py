"""Records of ``run.py`` -> ``RESULTS.md`` (filled in below)."""


def render_results(here) -> None:
    pass
