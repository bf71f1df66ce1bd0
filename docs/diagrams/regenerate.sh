#!/usr/bin/env bash
# Regenerate the diagrams of the shipped specs: bash docs/diagrams/regenerate.sh (needs Graphviz's `dot`).
set -euo pipefail
cd "$(dirname "$0")"
archc render efficientnet_b0 -o efficientnet_b0.stage.svg
archc render efficientnet_b0 --detail block -o efficientnet_b0.block.svg
archc render efficientnet_b0 --detail layer --direction TB -o efficientnet_b0.layer.svg
archc render efficientnet_b0 --dims 3 --in-channels 1 --num-classes 2 --resolution 128 -o efficientnet_b0.3d.stage.svg
archc render efficientnet_b0 --preset b7 --direction LR -o efficientnet_b7.stage.svg
archc render efficientnetv2_s -o efficientnetv2_s.stage.svg
