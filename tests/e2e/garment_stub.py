"""A scripted garment detector for the garment browser test: it "finds" the two products the test pasted into its
scene (fixed boxes), loaded by the live server through web.detector = "tests.e2e.garment_stub:ScriptedGarments"."""

from __future__ import annotations

from engine.localize import Detection

# Where tests/e2e/test_garment_browser.py pastes its products, relative to the 480 x 360 photo.
TOP_BOX = (0.3, 0.08, 0.72, 0.62)
SHOE_BOX = (0.04, 0.7, 0.3, 0.96)


class ScriptedGarments:
    def detect(self, image):  # noqa: ANN001, ANN201 - engine.localize.Detector
        return [Detection(TOP_BOX, "topwear", 0.92), Detection(SHOE_BOX, "footwear", 0.71)]
