#!/bin/bash
# interleaved configs, 3 repeats: NAME BENCH FLAG BROKER
out=/tmp/h20a-final; mkdir -p $out
cd /work/wt-i20a
configs=(
 "A /tmp/h20a-base/tributary-bench none /tmp/h20a-base/tributary"
 "B /tmp/h20a-bench-final --unthrottled /tmp/h20a-new1-tributary"
 "D /tmp/h20a-bench-final --unthrottled /tmp/h20a-base/tributary"
 "E /tmp/h20a-bench-new none /tmp/h20a-base/tributary"
 "C /tmp/h20a-bench-final none /tmp/h20a-new1-tributary"
)
for i in 1 2 3; do
  for c in "${configs[@]}"; do
    set -- $c
    flag=$3; [ $flag = none ] && flag=
    echo "$1-$i $(uptime)" >> $out.load
    $2 run --protocol amqp $flag --quiet --workload workloads/max-rate-1-topic-1-partition-100b.yaml \
      --tributary-bin $4 --test-duration-secs 20 --warmup-secs 5 --out $out/$1-$i > $out-$1-$i.log 2>&1
  done
done
echo "end $(uptime)" >> $out.load
