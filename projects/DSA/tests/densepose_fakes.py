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


def fake_densepose_live_modules():
    """Modules standing in for DensePose's live API as ``tools/cache_densepose.py`` uses it: ``add_densepose_config``
    (adds ``MODEL.ROI_DENSEPOSE_HEAD.NUM_PATCHES``), ``DensePoseChartPredictorOutput`` (coarse_segm, fine_segm,
    u, v per box) and ``DensePoseResultExtractor``, which converts those outputs per box as detectron2's
    DensePose does (``converters/chart_output_to_chart_result.py``: box truncated to integers, bilinear
    resampling to the box, fine labels where the coarse mask is foreground, U/V of the label's channel)."""
    import dataclasses

    import torch
    import torch.nn.functional as F
    from detectron2.config import CfgNode as CN
    from detectron2.structures import BoxMode

    names = ["densepose", "densepose.structures", "densepose.structures.chart", "densepose.vis",
             "densepose.vis.extractor"]
    mods = {n: types.ModuleType(n) for n in names}

    def add_densepose_config(cfg):
        cfg.MODEL.ROI_DENSEPOSE_HEAD = CN()
        cfg.MODEL.ROI_DENSEPOSE_HEAD.NUM_PATCHES = 0

    @dataclasses.dataclass
    class DensePoseChartPredictorOutput:
        coarse_segm: torch.Tensor
        fine_segm: torch.Tensor
        u: torch.Tensor
        v: torch.Tensor

        def __len__(self):
            return self.coarse_segm.size(0)

        def __getitem__(self, i):
            i = [i] if isinstance(i, int) else i
            return DensePoseChartPredictorOutput(self.coarse_segm[i], self.fine_segm[i], self.u[i], self.v[i])

        def to(self, device):
            return DensePoseChartPredictorOutput(*(t.to(device) for t in dataclasses.astuple(self)))

    class ChartResult:
        def __init__(self, labels, uv):
            self.labels, self.uv = labels, uv

    def convert(out, box_xyxy):
        x, y, w, h = BoxMode.convert(box_xyxy.clone(), BoxMode.XYXY_ABS, BoxMode.XYWH_ABS)[0].long().tolist()
        w, h = max(w, 1), max(h, 1)
        resize = lambda t: F.interpolate(t, (h, w), mode="bilinear", align_corners=False)
        coarse = resize(out.coarse_segm).argmax(1)
        labels = (resize(out.fine_segm).argmax(1) * (coarse > 0).long()).squeeze(0)
        u, v = resize(out.u), resize(out.v)
        uv = torch.zeros(2, h, w)
        for p in range(1, out.u.size(1)):
            m = labels == p
            uv[0][m], uv[1][m] = u[0, p][m], v[0, p][m]
        return ChartResult(labels, uv)

    class DensePoseResultExtractor:
        def __call__(self, instances, select=None):
            if not (instances.has("pred_densepose") and instances.has("pred_boxes")):
                return None, None
            boxes = instances.pred_boxes.tensor
            results = [convert(instances.pred_densepose[i], boxes[[i]]) for i in range(len(instances))]
            return results, BoxMode.convert(boxes.clone(), BoxMode.XYXY_ABS, BoxMode.XYWH_ABS)

    mods["densepose"].add_densepose_config = add_densepose_config
    mods["densepose.structures.chart"].DensePoseChartPredictorOutput = DensePoseChartPredictorOutput
    mods["densepose.vis.extractor"].DensePoseResultExtractor = DensePoseResultExtractor
    return mods, DensePoseChartPredictorOutput
