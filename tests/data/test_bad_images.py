"""A truncated or unreadable image is an error naming the file, in re-ID and person-search loading."""
import pytest
from PIL import Image

from reid2.utils.files import read_image_rgb


@pytest.fixture
def truncated_jpeg(tmp_path):
    path = tmp_path / "cut.jpg"
    Image.new("RGB", (64, 48), (200, 10, 10)).save(path, quality=95)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def test_reid_reader_names_a_truncated_file(truncated_jpeg):
    with pytest.raises(OSError, match=f"cannot read image {truncated_jpeg}"):
        read_image_rgb(truncated_jpeg)


@pytest.mark.parametrize("is_train", [True, False])
def test_person_search_mapper_names_a_truncated_file(truncated_jpeg, is_train):
    from reid2.config import get_cfg
    from reid2.data.person_search_mapper import NamedImageDatasetMapper, PersonSearchDatasetMapper

    cfg = get_cfg()
    cfg.merge_from_file("configs/synthetic/oim_tiny.yaml")
    mapper = (PersonSearchDatasetMapper if is_train else NamedImageDatasetMapper)(cfg, is_train=is_train)
    d = {"file_name": str(truncated_jpeg), "height": 48, "width": 64, "image_id": 0,
         "annotations": [{"bbox": [1, 1, 20, 40], "bbox_mode": 0, "category_id": 0, "person_id": 1}]}
    with pytest.raises(OSError, match=f"(?i)cannot read image {truncated_jpeg}: .*truncated"):
        mapper(d)
