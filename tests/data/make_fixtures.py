"""Regenerate the real-schema fixtures in tests/data (a few rows per benchmark, images embedded the way HF
stores them). Videos are not committed: `make_videos(root)` writes them where a test needs them.

    /root/venv/bin/python tests/data/make_fixtures.py
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, ImageDraw

from qwen3vl_eval.eval.synth import hf_image, red_span_video, square_video, write_parquet, write_video

HERE = Path(__file__).resolve().parent


def card(text: str, size: tuple[int, int] = (80, 48), color: tuple[int, int, int] = (250, 250, 250)) -> Image.Image:
    img = Image.new("RGB", size, color)
    ImageDraw.Draw(img).text((4, 4), text, fill=(0, 0, 0))
    return img


def make_all(root: Path = HERE) -> None:
    write_parquet(root / "docvqa/DocVQA/validation-00000-of-00001.parquet", "docvqa", [
        {"questionId": str(49153 + k), "question": q, "question_types": ["handwritten", "form"],
         "image": hf_image(card(a[0]), f"doc{k}.png"), "docId": 14465 + k, "ucsf_document_id": f"txpp{k:04d}",
         "ucsf_document_page_no": "2", "answers": a, "data_split": "val"}
        for k, (q, a) in enumerate([("What is the ‘actual’ value per 1000, during the year 1975?", ["0.28"]),
                                    ("Who is the sender?", ["John Smith", "J. Smith"]),
                                    ("What is the date mentioned?", ["May 5, 1976", "5/5/76"])])])
    write_parquet(root / "chartqa/data/test-00000-of-00001.parquet", "chartqa", [
        {"type": t, "question": q, "answer": a, "image": hf_image(card(a), f"chart{k}.png")}
        for k, (t, q, a) in enumerate([("human_test", "How many food item is shown in the bar graph?", "14"),
                                       ("human_test", "What is the difference in value?", "0.57"),
                                       ("augmented_test", "Which country has the lowest value?", "Yemen"),
                                       ("augmented_test", "What is the share of renewables?", "23.5%")])])
    tv = [("what is the brand of this camera?", ["dakota"] * 7 + ["dakota digital"] * 2 + ["clos culombu"]),
          ("what does the small white text spell?", ["copenhagen"] * 5 + ["thursday"] * 3 + ["cpenhagen"] * 2),
          ("what number is on the player's jersey?", ["22"] * 10)]
    write_parquet(root / "textvqa/validation.parquet", "textvqa", [
        {"image_id": f"{k:016x}", "question_id": 34602 + k, "question": q, "question_tokens": q.split(),
         "image": hf_image(card(a[0]), f"tv{k}.jpg"), "image_width": 80, "image_height": 48,
         "flickr_original_url": "", "flickr_300k_url": "", "answers": a, "image_classes": ["Camera"],
         "set_name": "val", "ocr_tokens": a[:2]} for k, (q, a) in enumerate(tv)])
    mm = [("validation_Accounting_1", "<image 1> Which option is best?", "['Yes', 'No', 'Maybe', 'Unknown']",
           "B", "multiple-choice", 1),
          ("validation_Art_Theory_2", "Compare <image 1> and <image 2>.", "['First', 'Second', 'Both']", "C",
           "multiple-choice", 2),
          ("validation_Math_3", "What is the area in <image 1>? Answer with a number.", "[]", "12.5", "open", 1)]
    write_parquet(root / "mmmu/data/validation-00000-of-00001.parquet", "mmmu", [
        {"id": i, "question": q, "options": o, "explanation": "", "answer": a, "question_type": qt,
         "img_type": "['Diagrams']", "topic_difficulty": "Easy", "subfield": "Test",
         **{f"image_{n + 1}": hf_image(card(f"{i} {n}"), f"{i}_{n}.png") for n in range(n_img)}}
        for i, q, o, a, qt, n_img in mm])
    vm = [("001", "short", "001-1", "What color is the square?", ["A. red", "B. green", "C. blue", "D. yellow"], "A"),
          ("001", "short", "001-2", "Where does it move?", ["A. left", "B. right", "C. up", "D. down"], "B"),
          ("002", "long", "002-1", "What color is the square?", ["A. red", "B. green", "C. blue", "D. yellow"], "C")]
    write_parquet(root / "videomme/videomme/test-00000-of-00001.parquet", "videomme", [
        {"video_id": v, "duration": d, "domain": "Knowledge", "sub_category": "Humanity & History",
         "url": f"https://www.youtube.com/watch?v=vid{v}", "videoID": f"vid{v}", "question_id": qid,
         "task_type": "Counting Problem", "question": q, "options": o, "answer": a} for v, d, qid, q, o, a in vm])
    write_parquet(root / "charades_sta/data/test-00000-of-00001.parquet", "charades_sta", [
        {"video": "AO8RW.mp4", "caption": "a person is putting a book on a shelf.", "timestamp": [0.0, 6.9]},
        {"video": "AO8RW.mp4", "caption": "person begins to play on a phone.", "timestamp": [20.8, 30.0]},
        {"video": "Y6R7T.mp4", "caption": "person closes the door.", "timestamp": [1.5, 4.25]}])
    for split, base in (("val", 0), ("testA", 10), ("testB", 20)):
        write_parquet(root / f"refcoco/data/{split}-00000-of-00001.parquet", "refcoco", [
            {"question_id": str(base + k), "image": hf_image(card(e[0], (160, 120)), f"coco{k}.jpg"),
             "question": "Please carefully observe the area circled in the image and come up with a caption for "
                         "the area.", "answer": e, "segmentation": [10.0, 10.0, 50.0, 10.0, 50.0, 40.0],
             "bbox": b, "iscrowd": 0, "file_name": f"COCO_train2014_{base + k:012d}.jpg"}
            for k, (e, b) in enumerate([(["man on left", "left guy"], [10.0, 20.0, 40.0, 60.0]),
                                        (["red car"], [80.5, 30.25, 60.0, 50.0])])])
    write_parquet(root / "mmlu/all/test-00000-of-00001.parquet", "mmlu", [
        {"question": q, "subject": s, "choices": c, "answer": a} for q, s, c, a in [
            ("Find the degree for the given field extension Q(sqrt(2)) over Q.", "abstract_algebra",
             ["0", "4", "2", "6"], 2),
            ("Which organ produces insulin?", "anatomy", ["Liver", "Pancreas", "Heart", "Kidney"], 1),
            ("What is 7 * 8?", "elementary_mathematics", ["54", "56", "58", "64"], 1),
            ("The first president of the USA was", "high_school_us_history",
             ["Lincoln", "Jefferson", "Adams", "Washington"], 3)]])
    (root / "gsm8k").mkdir(parents=True, exist_ok=True)
    with open(root / "gsm8k/test.jsonl", "w") as f:
        for q, a in [("Janet has 3 apples and buys 2 more. How many apples?", "3 + 2 = <<3+2=5>>5\n#### 5"),
                     ("A shirt costs $1,200 after doubling $600. What is the price?", "600*2=1200\n#### 1,200"),
                     ("Tom reads 4 pages a day for 7 days. How many pages?", "4*7=<<4*7=28>>28\n#### 28")]:
            f.write(json.dumps({"question": q, "answer": a}) + "\n")


def make_videos(root: Path) -> Path:
    """The fixture videos: Video-MME ids as <videoID>.mp4, Charades under Charades_v1_480/."""
    write_video(root / "vid001.mp4", square_video("red", "right"), fps=4)
    write_video(root / "vid002.mp4", square_video("blue", "down"), fps=4)
    write_video(root / "Charades_v1_480" / "AO8RW.mp4", red_span_video(0.0, 6.9, 8.0), fps=2)
    write_video(root / "Charades_v1_480" / "Y6R7T.mp4", red_span_video(1.5, 4.25, 6.0), fps=2)
    return root


if __name__ == "__main__":
    make_all()
    print(f"fixtures written under {HERE}")
