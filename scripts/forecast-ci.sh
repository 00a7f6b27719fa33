#!/usr/bin/env bash
# The forecast step of CI: `warden forecast eval` and `simulate` on shared/data (the
# issue's protocol), failing if the model does not beat Prophet's geometric-mean MASE, a
# series is more than 1.25x worse than the better of seasonal-naive-168 and Prophet, the
# q0.9 coverage leaves 0.87-0.93, or a chart is missing. Tables and PNG charts land in
# $FORECAST_OUT (default target/forecast). Uses the debug binary the test step already
# built (about 20 s for the Steam eval, a minute for the PLAICraft replay).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DATA="${WARDEN_SHARED_DATA:-$PWD/../shared/data}"
OUT="${FORECAST_OUT:-target/forecast}"
mkdir -p "$OUT"
export WARDEN_SHARED_DATA="$DATA"
warden="${WARDEN_BIN:-target/debug/warden}"
[ -x "$warden" ] || cargo build -q -p warden-control

"$warden" forecast eval --format steam "$DATA/demand/steam_hourly.csv" \
  --baselines "$DATA/demand/baselines_steam.csv" | tee "$OUT/eval-steam.txt"
"$warden" forecast eval --format sessions "$DATA/demand/plaicraft_sessions.csv" | tee "$OUT/eval-sessions.txt"
"$warden" forecast simulate --format steam --drop-partial "$DATA/demand/steam_hourly.csv" --chart "$OUT/simulate-steam.png" \
  | tee "$OUT/simulate-steam.txt"
"$warden" forecast simulate --format sessions "$DATA/demand/plaicraft_sessions.csv" \
  --chart "$OUT/simulate-sessions.png" | tee "$OUT/simulate-sessions.txt"
test -s "$OUT/simulate-steam.png" && test -s "$OUT/simulate-sessions.png"

# "geo-mean MASE: model 0.703, Prophet 0.901, ..." — the model must beat Prophet (and so
# seasonal-naive-168, 1.029).
summary=$(grep -E '^geo-mean MASE: model' "$OUT/eval-steam.txt")
model=$(sed -E 's/^geo-mean MASE: model ([0-9.]+),.*/\1/' <<<"$summary")
prophet=$(sed -E 's/^geo-mean MASE: model [0-9.]+, Prophet ([0-9.]+),.*/\1/' <<<"$summary")
awk -v m="$model" -v p="$prophet" 'BEGIN { if (m >= p || m >= 1.029) { print "forecast: model MASE " m " does not beat Prophet " p " and seasonal-naive-168 1.029"; exit 1 } }'
echo "forecast: model MASE $model < Prophet $prophet < seasonal-naive-168 1.029"

# "worst steam-578080 at 1.22× the better of the two": no series far behind the baselines.
worst=$(sed -nE 's/^geo-mean MASE: .*worst ([^ ]+) at ([0-9.]+)× the better of the two$/\1 \2/p' "$OUT/eval-steam.txt")
awk -v w="$worst" 'BEGIN { split(w, a, " "); if (a[2] == "" || a[2] > 1.25) { print "forecast: " a[1] " is " a[2] "x the better of seasonal-naive-168 and Prophet (limit 1.25)"; exit 1 } }'
# The model's SUMMARY row (the first): mean coverage of the q0.9 forecast on held-out days.
cover=$(awk '$1 == "SUMMARY" { print $5; exit }' "$OUT/eval-steam.txt")
awk -v c="$cover" 'BEGIN { if (c == "" || c < 0.87 || c > 0.93) { print "forecast: q0.9 coverage " c " outside 0.87-0.93"; exit 1 } }'
echo "forecast: worst series $worst x, q0.9 coverage $cover"
