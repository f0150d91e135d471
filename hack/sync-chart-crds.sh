#!/usr/bin/env bash
# Copy the CRDs from crds/ (the single source of truth) into the Helm chart.
#
#   bash hack/sync-chart-crds.sh
#
# Run it after every change in crds/; tests/unit/test_chart.py fails while the copies differ.
# The chart's own kopf.dev_peerings.yaml is left alone; a stale copy of a CRD that left
# crds/ is removed.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source_dir="$root/crds"
chart_dir="$root/charts/llmroute/crds"
# Files in the chart's crds/ that are not copies.
chart_owned=("kopf.dev_peerings.yaml")

mkdir -p "$chart_dir"
for copy in "$chart_dir"/*.yaml; do
  [[ -e "$copy" ]] || continue
  name="$(basename "$copy")"
  if [[ ! -e "$source_dir/$name" && ! " ${chart_owned[*]} " =~ " $name " ]]; then
    rm -- "$copy"
    echo "removed $name"
  fi
done
for crd in "$source_dir"/*.yaml; do
  name="$(basename "$crd")"
  if ! cmp -s "$crd" "$chart_dir/$name"; then
    cp -- "$crd" "$chart_dir/$name"
    echo "updated $name"
  fi
done
