"""Stand-ins for DensePose's result classes (the package is not installed in tests)."""
import types


def fake_densepose_modules():
    """Modules named as detectron2's DensePose, so torch.save pickles the real class path."""
    names = ["densepose", "densepose.structures", "densepose.structures.chart_result"]
    mods = {n: types.ModuleType(n) for n in names}

    class DensePoseChartResultWithConfidences:
        def __init__(self, labels, uv):
            self.labels, self.uv = labels, uv
            self.sigma_1 = self.sigma_2 = self.kappa_u = self.kappa_v = None
            self.fine_segm_confidence = self.coarse_segm_confidence = None

    DensePoseChartResultWithConfidences.__module__ = names[-1]
    DensePoseChartResultWithConfidences.__qualname__ = "DensePoseChartResultWithConfidences"
    mods[names[-1]].DensePoseChartResultWithConfidences = DensePoseChartResultWithConfidences
    return mods, DensePoseChartResultWithConfidences
