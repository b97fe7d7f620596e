#!/usr/bin/env bash
# The jet training campaign: start, or resume exactly, every unfinished run in the
# background, one thread each, for at most MAX_TIME minutes this session (default 150).
#
#   campaign/run.sh            # start / resume all runs
#   campaign/run.sh mdma-gan-t30 caloinn-ds1-photons
#   SEQUENTIAL=1 campaign/run.sh ipf-t30 pf-t30 apf-t30   # one after the other
#   campaign/run.sh two-moons-full   # a method study at the seed's budget, model by model
#   campaign/run.sh bump-hunt-full   # the OnlineFlow bump hunt at the seed's budget (hours; resumes)
#
# A run is campaign/RUN/ (a hepgen run folder; checkpoints/last.ckpt is its resumable
# state, committed whenever work pauses) trained with campaign/RUN.yaml. The training
# jets and showers are made again with the same seed when missing (the producers are
# byte-identical for any number of workers), so a fresh clone continues the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
HEPGEN=${HEPGEN:-.venv/bin/hepgen}
MAX_TIME=${MAX_TIME:-150}
declare -A MODEL=([mdma-flow-t30]=mdma-flow [mdma-gan-t30]=mdma-gan [epic-fm-t30]=epic-fm
                  [caloinn-ds1-photons]=caloinn [caloinn-ds1-pions]=caloinn [calodream-ds2]=calodream
                  [ipf-t30]=ipf [pf-t30]=pf [apf-t30]=apf [event-cflow-sm]=event-cflow [ddpm-hits-t]=ddpm-hits
                  [bib-ae-ild-photons]=bib-ae [wgan-3d-ild-photons]=wgan-3d [bib-ae-ild-pions]=bib-ae
                  [ddpm-hits-energy-t]=ddpm-hits [bib-ae-ild-photons-pp]=bib-ae)
declare -A EPOCHS=([mdma-flow-t30]=150 [mdma-gan-t30]=150 [epic-fm-t30]=150
                   [caloinn-ds1-photons]=40 [caloinn-ds1-pions]=40 [calodream-ds2]=60
                   [ipf-t30]=6 [pf-t30]=6 [apf-t30]=6 [event-cflow-sm]=40 [ddpm-hits-t]=40
                   [bib-ae-ild-photons]=35 [wgan-3d-ild-photons]=30 [bib-ae-ild-pions]=20
                   [ddpm-hits-energy-t]=12)  # bib-ae: the BIB-AE's epochs; its Post Processor's follow (none given: the config's)
# training data of each run and the command that makes it again (same seed, same file)
JETS=data/t30_train.h5
JETS30K=data/t30_train_30k.h5  # the first 30k jets of $JETS (point-flow baselines)
declare -A DATA=([mdma-flow-t30]=$JETS [mdma-gan-t30]=$JETS [epic-fm-t30]=$JETS
                 [ipf-t30]=$JETS30K [pf-t30]=$JETS30K [apf-t30]=$JETS30K
                 [caloinn-ds1-photons]=data/calo/ds1-photons_train.h5 [caloinn-ds1-pions]=data/calo/ds1-pions_train.h5
                 [calodream-ds2]=data/calo/ds2_train.h5 [ddpm-hits-t]=data/hits/t_train_30k.h5
                 [bib-ae-ild-photons]=data/grid/ild-photons_train.h5 [wgan-3d-ild-photons]=data/grid/ild-photons_train.h5
                 [bib-ae-ild-pions]=data/grid/ild-pions_train.h5 [ddpm-hits-energy-t]=data/hits/t_train_30k.h5
                 [bib-ae-ild-photons-pp]=data/grid/ild-photons_train.h5
                 [event-cflow-sm]=data/events/sm)  # a folder: one --data per file in it
# method studies at the seeds' budgets: `hepgen study NAME --resume` keeps every finished model,
# so a study killed at MAX_TIME continues with the next unfinished model
declare -A STUDY=([two-moons-full]=two-moons [bump-hunt-full]=bump-hunt)
# showers per training file (DS2: 50k, 2.6 GB of float64 voxels in memory while training)
declare -A SHOWERS=([ds1-photons]=100000 [ds1-pions]=100000 [ds2]=50000 [ild-photons]=10000 [ild-pions]=10000)
make_data() {
    case "$1" in
        data/events/sm) mkdir -p "$1"  # 100k selected events per SM process, a six-point stop scan
            for p in ttbar wjets zjets multijet gammajets; do test -f "$1/$p.txt" || \
                $HEPGEN data events --process $p --num-events 100000 --seed 1 --out "$1/$p.txt" --no-progress; done
            for m in "220 20" "300 20" "300 100" "400 20" "400 200" "500 100"; do set -- "$1" $m
                test -f "$1/stop_$2_$3.txt" || $HEPGEN data events --process stop --stop-mass $2 --lsp-mass $3 \
                    --num-events 20000 --seed 1 --out "$1/stop_$2_$3.txt" --no-progress; done ;;
        $JETS) $HEPGEN data jets --jet-type t --num-particles 30 --num-jets 100000 --seed 1 --out "$1" ;;
        $JETS30K) test -f $JETS || make_data $JETS
            ${HEPGEN%hepgen}python -c "from hepgen.data.jetnet import read_jets, write_jets, JetSample as J; \
s = read_jets('$JETS'); write_jets(J(s.particle_features[:30000], s.jet_features[:30000], jet_type=s.jet_type, \
source=s.source), '$1')" ;;
        data/hits/t_train_30k.h5) $HEPGEN data hits --jet-type t --num-jets 30000 --seed 1 --out "$1" ;;
        data/calo/*_train.h5|data/grid/*_train.h5) g=$(basename "$1" _train.h5)
            $HEPGEN data calo --geometry "$g" --num-showers "${SHOWERS[$g]}" --seed 1 --out "$1" ;;
    esac
}
RUNS=("${@:-mdma-flow-t30 mdma-gan-t30}")
RUNS=(${RUNS[*]})
# SEQUENTIAL=1: the runs one after the other in one background chain (short baselines)
SEQUENTIAL=${SEQUENTIAL:-0}

mkdir -p data/calo data/grid data/hits campaign/logs
# train RUN in the foreground: resume when it has a checkpoint
train_run() {
    local run=$1 dir=campaign/$1 resume=() data=() epochs=()
    if [ -n "${STUDY[$run]:-}" ]; then
        OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 timeout "$((MAX_TIME * 60))" $HEPGEN study "${STUDY[$run]}" --out "$dir" \
            --resume --no-progress >> "campaign/logs/$run.log" 2>&1 && touch "$dir/done"
        return
    fi
    if compgen -G "$dir/checkpoints/*.ckpt" > /dev/null; then resume=(--resume); fi
    if [ -n "${EPOCHS[$run]:-}" ]; then epochs=(--max-epochs "${EPOCHS[$run]}"); fi
    # the run's training data, made in its own background chain, so a run whose file exists
    # starts at once (two runs on one missing file wait for each other through a lock)
    case "${DATA[$run]}" in
        */sm) make_data "${DATA[$run]}" >> "campaign/logs/$run.log" 2>&1 ;;
        *) ( flock 9; test -f "${DATA[$run]}" || make_data "${DATA[$run]}" ) 9> "${DATA[$run]}.lock" \
               >> "campaign/logs/$run.log" 2>&1 ;;
    esac
    if [ -d "${DATA[$run]}" ]; then for f in "${DATA[$run]}"/*.txt; do data+=(--data "$f"); done
    else data=(--data "${DATA[$run]}"); fi
    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $HEPGEN train "${MODEL[$run]}" "${data[@]}" --out "$dir" \
        --config "campaign/$run.yaml" "${epochs[@]}" --max-time "$MAX_TIME" "${resume[@]}" \
        --no-progress >> "campaign/logs/$run.log" 2>&1
}
todo=()
for run in "${RUNS[@]}"; do
    if [ -f "campaign/$run/done" ]; then echo "$run: finished"; continue; fi
    echo "$run: $(compgen -G "campaign/$run/checkpoints/*.ckpt" > /dev/null && echo --resume || echo start)" \
         "(log campaign/logs/$run.log)$([ "$SEQUENTIAL" = 1 ] && echo ", after the previous one")"
    todo+=("$run")
done
if [ "$SEQUENTIAL" = 1 ]; then
    ( trap '' HUP; for run in "${todo[@]}"; do train_run "$run" || true; done ) &
else
    for run in "${todo[@]}"; do ( trap '' HUP; train_run "$run" ) & done
fi
