"""Bone-length vectors of synthetic people from a parametric body model (rest pose only).

* **Anny** (``anny==0.6.2``, open; default): phenotypes from its WHO-calibrated
  ``SimpleShapeDistribution`` (adults in a morphological-age range) plus uniformly randomised local
  length/height blend shapes (:data:`ANNY_LOCAL_CHANGES`), so that limb lengths are not almost perfectly
  correlated. The 17 Human3.6M joints are linear in the blend-shape coefficients (bone heads, one
  top-of-head vertex, the COCO nose regressor), so they are precomputed as a small linear basis and a batch
  of bodies costs one matrix product; :meth:`AnnySampler.joints_reference` checks the basis against Anny's own
  forward pass.
* **SMPL** (through ``smplx``; the paper's procedure): 10 betas ~ N(0, I), Human3.6M joints regressed from the
  vertices with ``J_regressor_h36m_correct.npy``. Needs the licensed files (see :func:`smpl_files`).

Outputs are (N, 16) metres in :data:`common.core.skeleton.BONE_NAMES` order, left/right pairs averaged.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from common.core.bones import average_symmetric, bone_lengths
from common.utils.downloads import cache_dir
from common.utils.errors import UserError

# Local Anny blend shapes that change segment lengths/widths (value in [-1, 1]: decr ... incr).
ANNY_LOCAL_CHANGES = [
    "measure-upperarm-length-incr", "measure-lowerarm-length-incr", "measure-upperleg-height-incr",
    "measure-lowerleg-height-incr", "measure-neck-height-incr", "measure-napetowaist-dist-incr",
    "measure-waisttohip-dist-incr", "measure-shoulder-dist-incr", "hip-scale-horiz-incr",
]

# U(-s, s) range of the local blend shapes: s = 0.3 brings the mean correlation between the four limb
# segments (thigh, calf, upper arm, lower arm) to about 0.6 (measured on 3000-5000 bodies; higher without them).
DEFAULT_LOCAL_SCALE = 0.3

# Human3.6M joint -> Anny rest bone head(s) (averaged). Joints 9 (nose) and 10 (head top) come from vertices.
ANNY_JOINT_BONES = {
    0: ["upperleg01.L", "upperleg01.R"], 1: ["upperleg01.R"], 2: ["lowerleg01.R"], 3: ["foot.R"],
    4: ["upperleg01.L"], 5: ["lowerleg01.L"], 6: ["foot.L"], 7: ["spine03"], 8: ["neck01"],
    11: ["upperarm01.L"], 12: ["lowerarm01.L"], 13: ["wrist.L"],
    14: ["upperarm01.R"], 15: ["lowerarm01.R"], 16: ["wrist.R"],
}

SMPL_REGRESSOR = "J_regressor_h36m_correct.npy"


def anny_cache_dir() -> Path:
    """``$ANNY_CACHE_DIR``, else ``${BLAPOSE_CACHE:-~/.cache/blapose}/anny`` (set before importing anny)."""
    if "ANNY_CACHE_DIR" in os.environ:
        return Path(os.environ["ANNY_CACHE_DIR"])
    folder = cache_dir() / "anny"
    os.environ["ANNY_CACHE_DIR"] = str(folder)
    return folder


class AnnySampler:
    """Sample bone lengths of adult Anny bodies.

    gender: ``neutral`` (androgynous bodies, gender blend 0.5, heights/weights drawn from the mixed
    population) or ``mix`` (half male, half female bodies). age_range: morphological age in years.
    local_scale: the local length blend shapes are drawn from U(-local_scale, local_scale).
    """

    def __init__(self, gender: str = "neutral", age_range: tuple[float, float] = (20.0, 60.0),
                 local_scale: float = DEFAULT_LOCAL_SCALE, seed: int = 1,
                 device: torch.device | str = "cpu") -> None:
        if gender not in ("neutral", "mix"):
            raise UserError(f"--gender must be neutral or mix, got {gender!r}")
        if not 0 <= age_range[0] < age_range[1]:
            raise UserError(f"invalid age range {age_range}")
        anny_cache_dir()
        try:
            import anny
            from anny.shape_distribution import SimpleShapeDistribution
        except ImportError as exc:
            raise UserError(f"the Anny body model is not installed (pip install anny==0.6.2): {exc}") from None
        torch.manual_seed(seed)
        self.gender, self.local_scale = gender, local_scale
        self.model = anny.Anny(local_changes=list(ANNY_LOCAL_CHANGES)).to(device)
        dtype, device = self.model.dtype, self.model.device

        def const(value: float) -> torch.Tensor:
            return torch.tensor(value, dtype=dtype, device=device)

        ages = torch.distributions.Uniform(const(age_range[0]), const(age_range[1]))
        genders = (torch.distributions.Bernoulli(const(0.5)) if gender == "mix"
                   else torch.distributions.Uniform(const(0.0), const(1.0)))
        self.distribution = SimpleShapeDistribution(self.model, morphological_age_distribution=ages,
                                                    gender_distribution=genders)
        self._build_basis(anny.KeypointsRegressor.coco(self.model, labels=["nose"]))

    def _build_basis(self, nose_regressor) -> None:
        """(17, 3) template joints and (C, 17, 3) joint blend shapes, linear in the coefficients."""
        m = self.model
        labels = list(m.bone_labels)
        missing = [b for bones in ANNY_JOINT_BONES.values() for b in bones if b not in labels]
        if missing:
            raise UserError(f"this Anny version lacks the bones {missing}")
        self.head_top_vertex = int(torch.argmax(m.template_vertices[:, 2]))
        nose_w = nose_regressor.regression_weights[0]  # (V,)
        template, shapes = [], []
        for joint in range(17):
            if joint == 9:
                template.append(nose_w @ m.template_vertices)
                shapes.append(torch.einsum("v,cvd->cd", nose_w, m.blendshapes))
            elif joint == 10:
                template.append(m.template_vertices[self.head_top_vertex])
                shapes.append(m.blendshapes[:, self.head_top_vertex])
            else:
                idx = [labels.index(b) for b in ANNY_JOINT_BONES[joint]]
                template.append(m.template_bone_heads[idx].mean(0))
                shapes.append(m.bone_heads_blendshapes[:, idx].mean(1))
        self.template_joints = torch.stack(template)  # (17, 3)
        self.joint_shapes = torch.stack(shapes, dim=1)  # (C, 17, 3)

    def sample_parameters(self, n: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Phenotype and local-change keyword tensors for ``n`` bodies."""
        _, phenotype = self.distribution.sample(n)
        if self.gender == "neutral":
            phenotype["gender"] = torch.full_like(phenotype["gender"], 0.5)
        dtype, device = self.model.dtype, self.model.device
        local = {name: (torch.rand(n, dtype=dtype, device=device) * 2 - 1) * self.local_scale
                 for name in ANNY_LOCAL_CHANGES}
        return phenotype, local

    def joints(self, phenotype: dict[str, torch.Tensor], local: dict[str, torch.Tensor]) -> torch.Tensor:
        """Rest-pose Human3.6M joints (B, 17, 3) metres (Anny's frame, z up) from the linear basis."""
        _, pheno, local_t, facial = self.model.get_tensor_inputs(None, phenotype, local, None)
        coeffs = self.model._get_phenotype_blendshape_coefficients(pheno, local_t, facial)  # noqa: SLF001
        return self.template_joints + torch.einsum("cjd,bc->bjd", self.joint_shapes, coeffs)

    def joints_reference(self, phenotype: dict[str, torch.Tensor], local: dict[str, torch.Tensor]) -> torch.Tensor:
        """The same joints through Anny's full rest-pose forward pass (slow; for checking the basis)."""
        import anny

        out = self.model(phenotype_kwargs=phenotype, local_changes_kwargs=local)
        labels = list(self.model.bone_labels)
        heads, verts = out["rest_bone_heads"], out["rest_vertices"]
        nose = anny.KeypointsRegressor.coco(self.model, labels=["nose"])({"vertices": verts})[:, 0]
        joints = []
        for joint in range(17):
            if joint == 9:
                joints.append(nose)
            elif joint == 10:
                joints.append(verts[:, self.head_top_vertex])
            else:
                joints.append(heads[:, [labels.index(b) for b in ANNY_JOINT_BONES[joint]]].mean(1))
        return torch.stack(joints, dim=1)

    def sample(self, n: int, batch: int = 20000, progress: bool = True) -> np.ndarray:
        """(n, 16) bone lengths in metres, symmetric pairs equal."""
        out = []
        for start in tqdm(range(0, n, batch), desc="Anny bodies", disable=not progress, unit="batch"):
            joints = self.joints(*self.sample_parameters(min(batch, n - start)))
            out.append(average_symmetric(bone_lengths(joints)).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 16), np.float32)


def smpl_files(model_dir: str | Path) -> dict[str, Path]:
    """The licensed files ``--body_model smpl`` needs, per gender, plus the Human3.6M regressor."""
    model_dir = Path(model_dir)
    return {"neutral": model_dir / "smpl" / "SMPL_NEUTRAL.pkl", "male": model_dir / "smpl" / "SMPL_MALE.pkl",
            "female": model_dir / "smpl" / "SMPL_FEMALE.pkl", "regressor": model_dir / SMPL_REGRESSOR}


def sample_smpl(n: int, gender: str, model_dir: str | Path, seed: int = 1, batch: int = 1000) -> np.ndarray:
    """The paper's procedure: (n, 16) metres from SMPL bodies with betas ~ N(0, I) (10 betas).

    gender ``neutral`` uses SMPL_NEUTRAL; ``mix`` half SMPL_MALE, half SMPL_FEMALE. The Human3.6M joints are
    ``J_regressor_h36m_correct.npy`` (17 x 6890) applied to the vertices (looked up in ``model_dir`` or
    ``model_dir/smpl``).
    """
    files = smpl_files(model_dir)
    genders = ["neutral"] if gender == "neutral" else ["male", "female"]
    regressor = files["regressor"]
    if not regressor.is_file() and (Path(model_dir) / "smpl" / SMPL_REGRESSOR).is_file():
        regressor = Path(model_dir) / "smpl" / SMPL_REGRESSOR
    missing = [str(files[g]) for g in genders if not files[g].is_file()]
    if not regressor.is_file():
        missing.append(str(files["regressor"]))
    if missing:
        raise UserError(f"--body_model smpl needs the licensed SMPL files, missing: {', '.join(missing)} "
                        "(register at https://smpl.is.tue.mpg.de; or use --body_model anny)")
    try:
        import smplx
    except ImportError:
        raise UserError("--body_model smpl needs the smplx package (pip install smplx)") from None
    j_reg = torch.as_tensor(np.load(regressor), dtype=torch.float32)
    if j_reg.ndim != 2 or j_reg.shape[0] != 17:
        raise UserError(f"{regressor}: expected a (17, 6890) regressor, got {tuple(j_reg.shape)}")
    gen = torch.Generator().manual_seed(seed)
    out = []
    counts = [n] if len(genders) == 1 else [n // 2, n - n // 2]
    for g, count in zip(genders, counts):
        model = smplx.create(str(files[g].parent.parent), model_type="smpl", gender=g, num_betas=10)
        for start in tqdm(range(0, count, batch), desc=f"SMPL {g}"):
            size = min(batch, count - start)
            betas = torch.randn((size, 10), generator=gen)
            with torch.no_grad():
                vertices = model(betas=betas, return_verts=True).vertices  # (B, 6890, 3)
            joints = torch.einsum("jv,bvd->bjd", j_reg, vertices)
            out.append(average_symmetric(bone_lengths(joints)).numpy())
    return np.concatenate(out).astype(np.float32)
