"""The verdict names are declared once (report.claims.VERDICTS); the report's marks and the forest plot's
colours cover exactly those names, so a new or renamed verdict cannot render without a mark or a colour."""

from samrepro.report.claims import VERDICTS
from samrepro.report.plots import VERDICT_COLORS
from samrepro.report.render import MARKS


def test_marks_and_colours_cover_exactly_the_verdicts():
    assert set(MARKS) == set(VERDICTS)
    assert set(VERDICT_COLORS) == set(VERDICTS)
