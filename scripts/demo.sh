#!/usr/bin/env bash
# The main job on a fresh machine: install the system libraries, build in release, then encode the sample
# images and texts with the bundled small model and print the image × text probability table.
# The bundled model is the reference's tiny test CLIP (random weights), so the table shows the pipeline
# working end to end, not a trained model's judgement; use --model ViT-B-16 after `cnclip download ViT-B-16`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift build -c release --product cnclip
F=Tests/Fixtures
images=()
for name in rgb.jpg progressive.jpg gray.jpg cmyk.jpg rgba.png palette.png lossy.webp; do images+=(--image "$F/images/$name"); done
echo "== features of one image and one text (first values) =="
.build/release/cnclip encode --resume "$F/models/vit-tiny.pt" --config "$F/models/vit-tiny.json" \
  --image "$F/images/rgb.jpg" --text 皮卡丘 | cut -c1-110
echo "== image × text probabilities =="
.build/release/cnclip similarity --resume "$F/models/vit-tiny.pt" --config "$F/models/vit-tiny.json" \
  "${images[@]}" --text 皮卡丘 --text 杰尼龟 --text 妙蛙种子 --text 小火龙
