"""Pair-source adapters on fixture files written here in each dataset's own format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from indexer.datasets.pairs import (
    PairSourceError,
    crop_query,
    read_deepfashion_consumer2shop,
    read_deepfashion_inshop,
    read_gallery_csv,
    read_pair_set,
    read_pairs_csv,
    read_street2shop,
    write_pair_set,
)


def touch_image(path: Path, size: tuple[int, int] = (30, 40)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (120, 30, 30)).save(path)
    return path


def write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def consumer2shop(tmp_path: Path) -> Path:
    root = tmp_path / "c2s"
    rows = [
        ("img/TOPS/Summer_Wear/id_00000001/comsumer_01.jpg", "img/TOPS/Summer_Wear/id_00000001/shop_01.jpg",
         "id_00000001", "train"),
        ("img/TOPS/Summer_Wear/id_00000002/comsumer_01.jpg", "img/TOPS/Summer_Wear/id_00000002/shop_01.jpg",
         "id_00000002", "test"),
        ("img/TOPS/Summer_Wear/id_00000002/comsumer_02.jpg", "img/TOPS/Summer_Wear/id_00000002/shop_01.jpg",
         "id_00000002", "test"),
        ("img/DRESSES/Dress/id_00000003/comsumer_01.jpg", "img/DRESSES/Dress/id_00000003/shop_01.jpg",
         "id_00000003", "val"),
        ("img/DRESSES/Dress/id_00000003/comsumer_01.jpg", "img/DRESSES/Dress/id_00000003/shop_02.jpg",
         "id_00000003", "val"),
    ]
    write_lines(root / "Eval" / "list_eval_partition.txt",
                [str(len(rows)), "image_pair_name_1 image_pair_name_2 item_id evaluation_status"]
                + [" ".join(r) for r in rows])
    images = sorted({r[0] for r in rows} | {r[1] for r in rows})
    # <image name> <clothes type: 1 upper, 2 lower, 3 full body> <source type: 1 shop, 2 consumer> x_1 y_1 x_2 y_2
    bbox = [f"{name} {'3' if 'DRESS' in name else '1'} {'2' if 'comsumer' in name else '1'} 2 3 20 30"
            for name in images]
    write_lines(root / "Anno" / "list_bbox_consumer2shop.txt",
                [str(len(images)), "image_name clothes_type source_type x_1 y_1 x_2 y_2"] + bbox)
    for name in images:
        touch_image(root / "Img" / name)
    return root


def test_deepfashion_consumer_to_shop(consumer2shop: Path) -> None:
    ps = read_deepfashion_consumer2shop(consumer2shop, ["test"])
    assert [p.item_id for p in ps.pairs] == ["id_00000002", "id_00000002"]
    assert len(ps.gallery) == 1 and ps.gallery[0].item_id == "id_00000002"
    assert ps.pairs[0].bbox == (2.0, 3.0, 20.0, 30.0) and ps.pairs[0].label == "upper-body"
    assert ps.pairs[0].query_image.is_file()
    both = read_deepfashion_consumer2shop(consumer2shop, ["val", "test"])
    assert len(both.pairs) == 3 and len(both.gallery) == 3  # one consumer photo, two shop photos of item 3
    assert {g.label for g in both.gallery} == {"upper-body", "full-body"}


def test_deepfashion_count_line_is_checked(consumer2shop: Path) -> None:
    part = consumer2shop / "Eval" / "list_eval_partition.txt"
    lines = part.read_text().splitlines()
    part.write_text("\n".join(["9", *lines[1:]]) + "\n")
    with pytest.raises(PairSourceError, match="declares 9"):
        read_deepfashion_consumer2shop(consumer2shop)


def test_deepfashion_in_shop(tmp_path: Path) -> None:
    root = tmp_path / "inshop"
    rows = [("img/WOMEN/Dresses/id_00000002/02_1_front.jpg", "id_00000002", "train"),
            ("img/WOMEN/Dresses/id_00000002/02_2_side.jpg", "id_00000002", "train"),
            ("img/MEN/Denim/id_00000080/01_1_front.jpg", "id_00000080", "query"),
            ("img/MEN/Denim/id_00000080/01_2_side.jpg", "id_00000080", "gallery"),
            ("img/MEN/Denim/id_00000081/01_1_front.jpg", "id_00000081", "gallery")]
    write_lines(root / "Eval" / "list_eval_partition.txt",
                [str(len(rows)), "image_name item_id evaluation_status"] + [" ".join(r) for r in rows])
    write_lines(root / "Anno" / "list_bbox_inshop.txt",
                ["1", "image_name clothes_type pose_type x_1 y_1 x_2 y_2",
                 "img/MEN/Denim/id_00000080/01_1_front.jpg 2 1 10 20 30 40"])
    test = read_deepfashion_inshop(root, "test")
    assert [(p.item_id, p.bbox, p.label) for p in test.pairs] == [("id_00000080", (10.0, 20.0, 30.0, 40.0),
                                                                   "lower-body")]
    assert sorted(g.item_id for g in test.gallery) == ["id_00000080", "id_00000081"]
    train = read_deepfashion_inshop(root, "train")
    assert len(train.pairs) == 1 and train.gallery[0].image_id.endswith("02_1_front.jpg")
    with pytest.raises(PairSourceError):
        read_deepfashion_inshop(root, "holdout")


def test_street2shop_json(tmp_path: Path) -> None:
    meta, photos = tmp_path / "meta", tmp_path / "photos"
    meta.mkdir()
    (meta / "test_pairs_dresses.json").write_text(json.dumps([
        {"photo": 11, "product": 500, "bbox": {"left": 5, "top": 6, "width": 10, "height": 20}},
        {"photo": 12, "product": 501, "bbox": {"left": 0, "top": 0, "width": 8, "height": 8}},
        {"photo": 13, "product": 502, "bbox": {"left": 0, "top": 0, "width": 8, "height": 8}},  # image missing
        {"photo": 14, "product": 999, "bbox": {"left": 0, "top": 0, "width": 8, "height": 8}},  # no shop photo
        {"photo": 15, "product": 500},  # no bbox: whole photo
        {"product": 500},  # broken entry
    ]))
    (meta / "retrieval_dresses.json").write_text(json.dumps([
        {"photo": 21, "product": 500}, {"photo": 22, "product": 500}, {"photo": 23, "product": 501},
        {"photo": 24, "product": 502}]))
    for pid in (11, 12, 14, 21, 22, 23, 24):
        touch_image(photos / f"{pid:09d}.jpg")
    touch_image(photos / "15.png")
    ps = read_street2shop(meta, photos, split="test")
    assert [(p.item_id, p.bbox) for p in ps.pairs] == [("dresses/500", (5.0, 6.0, 15.0, 26.0)),
                                                      ("dresses/501", (0.0, 0.0, 8.0, 8.0)),
                                                      ("dresses/500", None)]
    assert sorted(g.item_id for g in ps.gallery) == ["dresses/500", "dresses/500", "dresses/501", "dresses/502"]
    assert any("not found" in p for p in ps.problems) and any("entry 5" in p for p in ps.problems)
    assert any("no gallery image" in p for p in ps.problems)
    assert all(p.label == "dresses" for p in ps.pairs)
    with pytest.raises(PairSourceError, match="no train_pairs"):
        read_street2shop(meta, photos, split="train")


def test_generic_csv_roundtrip_and_bad_rows(tmp_path: Path) -> None:
    data = tmp_path / "data"
    touch_image(data / "q1.jpg")
    touch_image(data / "q2.jpg")
    touch_image(data / "shop" / "a.jpg")
    touch_image(data / "shop" / "b.jpg")
    (data / "pairs.csv").write_text("query_image,item_id,x0,y0,x1,y1,label\n"
                                    "q1.jpg,A,1,2,20,30,tops\n"
                                    "q2.jpg,B,,,,,shoes\n"
                                    "missing.jpg,A,,,,,\n"
                                    "q1.jpg,,,,,,\n"
                                    "q2.jpg,A,5,5,2,2,\n"
                                    "q2.jpg,A,x,1,2,3,\n")
    (data / "gallery.csv").write_text("id,image,item_id,label\n1,shop/a.jpg,A,tops\n2,shop/b.jpg,B,shoes\n"
                                      "2,shop/b.jpg,B,shoes\n3,shop/none.jpg,C,\n")
    pairs, problems = read_pairs_csv(data / "pairs.csv")
    assert [(p.item_id, p.bbox) for p in pairs] == [("A", (1.0, 2.0, 20.0, 30.0)), ("B", None)]
    assert [p.split(":")[0] for p in problems] == ["row 4", "row 5", "row 6", "row 7"]
    gallery, gproblems = read_gallery_csv(data / "gallery.csv")
    assert [g.item_id for g in gallery] == ["A", "B"] and len(gproblems) == 2
    ps = read_pair_set(data / "pairs.csv", data / "gallery.csv")
    out = tmp_path / "out"
    write_pair_set(ps, out)
    again = read_pair_set(out / "pairs.csv", out / "gallery.csv")
    assert [(p.query_image.resolve(), p.item_id, p.bbox, p.label) for p in again.pairs] == \
        [(p.query_image.resolve(), p.item_id, p.bbox, p.label) for p in ps.pairs]
    assert [(g.image.resolve(), g.item_id) for g in again.gallery] == [(g.image.resolve(), g.item_id)
                                                                       for g in ps.gallery]
    assert not again.problems
    (data / "nope.csv").write_text("photo,product\n")
    with pytest.raises(PairSourceError, match="query_image,item_id"):
        read_pairs_csv(data / "nope.csv")


def test_crop_query_clips_the_box() -> None:
    img = Image.new("RGB", (50, 40))
    assert crop_query(img, None) is img
    assert crop_query(img, (10, 5, 30, 25)).size == (20, 20)
    assert crop_query(img, (-10, -10, 500, 500)).size == (50, 40)
    assert crop_query(img, (60, 60, 80, 80)).size == (50, 40)  # empty after clipping: whole photo
