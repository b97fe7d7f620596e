"""scripts/campaign_status.py: the campaign's state table read from run folders."""

import importlib.util
from pathlib import Path

import torch

SCRIPT = Path(__file__).parents[1] / "scripts" / "campaign_status.py"


def _module():
    spec = importlib.util.spec_from_file_location("campaign_status", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_status_rows_from_checkpoints_selection_and_studies(tmp_path, capsys):
    status = _module()
    (tmp_path / "run.sh").write_text("declare -A EPOCHS=([gan-t30]=150 [inn]=40\n"
                                     "                   [old]=6)\nsomething else\n")
    gan = tmp_path / "gan-t30"
    (gan / "checkpoints").mkdir(parents=True)
    progress = {"total": {"ready": 125, "completed": 124, "started": 125, "processed": 125}}
    torch.save({"epoch": 124, "global_step": 97500, "loops": {"fit_loop": {"epoch_progress": progress}}},
               gan / "checkpoints" / "last.ckpt")
    header = "epoch,step,hours,w1m_ratio,w1p_ratio,w1efp_ratio,fd_ratio,score_ratio\n"
    (gan / "selection.csv").write_text(header + "9,3900,1.5,20,5,12,300,25.0\n79,31200,6.6,8.1,4.1,7.5,38,9.9\n"
                                       "123,96720,9.5,8.3,3.4,8.6,158,14.0\n")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "done").touch()
    study = tmp_path / "hunt"
    study.mkdir()
    torch.save({"step": 68, "seconds": 5616.0}, study / "online.ckpt")
    (tmp_path / "logs").mkdir()

    rows = {r[0]: r for r in status.rows(tmp_path)}
    assert set(rows) == {"gan-t30", "old", "hunt"}  # logs/ is not a run
    # 125 epochs ran (the csv's epoch 79 is the selection after 80 epochs), the best score wins
    assert rows["gan-t30"][1:5] == ["open", "125 / 150", "97500", "9.5"]
    assert rows["gan-t30"][5].startswith("9.9 after 80 (W1M 8.1, W1P 4.1, W1EFP 7.5, FD 38)")
    assert rows["old"][1:3] == ["finished", "6 / 6"]
    assert rows["hunt"][1:3] == ["open", "online.ckpt: step 68, 1.56 h"]

    assert status.main([str(tmp_path / "missing")]) == 2
    assert "not a campaign folder" in capsys.readouterr().err
