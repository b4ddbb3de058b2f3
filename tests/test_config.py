"""Run configs: defaults, device profiles, ablation presets and config files, in that order."""

import pytest

from align4d_core.config import CPU_PROFILE, PRESETS, RunConfig, build_run_config, from_dict, to_dict


def test_cuda_gets_the_papers_schedule():
    config = build_run_config("cuda")
    assert config == RunConfig()
    assert config.optimize.steps == 500 and config.optimize.frames_per_step is None  # DG4D
    assert config.optimize.resolution_schedule == ((0.3, 128), (0.6, 256), (1.0, 512))


def test_cpu_gets_the_cpu_profile():
    config = build_run_config("cpu")
    for key, value in CPU_PROFILE["optimize"].items():
        got = getattr(config.optimize, key)
        assert got == (tuple(tuple(v) for v in value) if isinstance(value, list) else value), key
    assert build_run_config("cpu", {"profile": "paper"}) == RunConfig()


def test_presets_switch_the_ablations():
    assert build_run_config("cuda", preset="no-oda").method.oda is False
    assert build_run_config("cuda", preset="no-mgja").method.mgja is False
    assert build_run_config("cuda", preset="no-ao").method.ao is False
    assert set(PRESETS) == {"align4d", "no-oda", "no-mgja", "no-ao"}
    with pytest.raises(ValueError, match="unknown preset"):
        build_run_config("cpu", preset="no-everything")


def test_a_config_file_wins_over_the_profile_and_the_preset():
    config = build_run_config("cpu", {"optimize": {"steps": 7}, "method": {"ao": True}}, preset="no-ao")
    assert config.optimize.steps == 7 and config.method.ao is True
    assert config.optimize.frames_per_step == CPU_PROFILE["optimize"]["frames_per_step"]


def test_unknown_settings_are_errors_that_name_them():
    with pytest.raises(ValueError, match="OptimizeConfig.stepz"):
        build_run_config("cpu", {"optimize": {"stepz": 3}})
    with pytest.raises(ValueError, match="unknown profile"):
        build_run_config("cpu", {"profile": "laptop"})


def test_round_trip_through_a_dict():
    config = build_run_config("cpu", preset="no-mgja")
    assert from_dict(RunConfig, to_dict(config)) == config


def test_a_value_of_the_wrong_type_or_out_of_range_names_the_key_the_value_and_the_expectation():
    with pytest.raises(ValueError, match=r"setting optimize.steps = '7': Input should be a valid integer"):
        build_run_config("cpu", {"optimize": {"steps": "7"}})
    with pytest.raises(ValueError, match=r"setting optimize.steps = 0: Input should be greater than or equal to 1"):
        build_run_config("cpu", {"optimize": {"steps": 0}})
    with pytest.raises(ValueError, match=r"setting guidance.backend = 'zero-123'"):
        build_run_config("cpu", {"guidance": {"backend": "zero-123"}})
    with pytest.raises(ValueError, match=r"setting method.oda = 1: Input should be a valid boolean"):
        build_run_config("cpu", {"method": {"oda": 1}})
    assert build_run_config("cpu", {"optimize": {"position_lr": [0.002, 0.0001]}}).optimize.position_lr == (0.002, 1e-4)


def test_profiles_are_checked_when_defined():
    from align4d_core.config import PROFILES, Profile

    assert set(PROFILES) == {"paper", "cpu"} and PROFILES["paper"].overrides == {}
    with pytest.raises(ValueError, match=r"profile 'laptop': unknown setting OptimizeConfig.stepz"):
        Profile(name="laptop", overrides={"optimize": {"stepz": 1}}, why="a typo")
