"""Check by breaking (issue 24): each guarantee named in the issue is broken on purpose, one at a
time, and the test that pins it must then fail. Run from the repository root:

    python scripts/break_checks.py            # every case (about 10 minutes on 2 cores)
    python scripts/break_checks.py ece-bins   # the cases whose name contains 'ece-bins'

Each case replaces one exact piece of source text (refusing to run if the text is not there, so a
refactor cannot make a case silently vacuous), runs the named tests, and restores the file.
Exit status 1 when a broken behaviour leaves its tests green.
"""
from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "mmrobust"
GUARANTEES = "tests/test_guarantees.py"
GATE = "tests/test_gate.py"
TEXT = "tests/test_textgate.py"
MEDIA = "tests/test_media.py"
MANIFEST = "tests/test_manifest.py"
VIDEO = "tests/test_video.py"


@dataclass(frozen=True)
class Break:
    name: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]


CASES = (
    Break("answered-by-constant", "methods/ume_mma.py",
          "return choice if reference_modality(choice) else self.parts[choice]", 'return "mma"',
          (f"{GUARANTEES}::test_answered_by_names_the_candidate_whose_probabilities_each_row_got",)),
    Break("predictor-answered-by-pattern", "predictor.py",
          "self.method.answered_by(pattern), why)", 'self.method.answered_by(patterns[0]), why)',
          (f"{GUARANTEES}::test_answered_by_names_the_candidate_whose_probabilities_each_row_got",)),
    Break("calibration-on-test", "experiment.py",
          "calibration = fit_calibration(method, val, self.calibration)",
          "calibration = fit_calibration(method, self.test, self.calibration)",
          (f"{GUARANTEES}::test_temperatures_and_set_thresholds_do_not_depend_on_test_labels",)),
    Break("model-calibration-on-test", "pipeline.py",
          "calibration = fit_calibration(method, val, config.calibration)",
          "calibration = fit_calibration(method, splits.test, config.calibration)",
          (f"{GUARANTEES}::test_the_saved_model_is_calibrated_on_the_validation_split",)),
    Break("worst-reference", "evidence.py", "return max(candidates)[1] if candidates", "return min(candidates)[1] if candidates",
          (f"{GUARANTEES}::test_the_reference_is_the_best_unimodal_model_of_a_present_modality",)),
    Break("ece-bins", "calibration.py", "ECE_BINS = 15", "ECE_BINS = 10",
          (f"{GUARANTEES}::test_ece_uses_fifteen_equal_width_bins",)),
    Break("routing-se-zero", "methods/ume_mma.py", "return {c: float(np.nanstd(spread[best] - spread[c])) for c in probas}",
          "return {c: 0.0 for c in probas}",
          (f"{GUARANTEES}::test_routing_scores_each_pattern_on_its_own_validation_rows_with_bootstrap_standard_errors",
           f"{GUARANTEES}::test_paired_standard_error_matches_the_binomial_formula")),
    Break("routing-se-one", "methods/ume_mma.py", "return {c: float(np.nanstd(spread[best] - spread[c])) for c in probas}",
          "return {c: 1.0 for c in probas}",
          (f"{GUARANTEES}::test_routing_scores_each_pattern_on_its_own_validation_rows_with_bootstrap_standard_errors",
           f"{GUARANTEES}::test_paired_standard_error_matches_the_binomial_formula")),
    Break("routing-every-row", "methods/ume_mma.py", "rows = np.flatnonzero(mask.scored)", "rows = np.arange(len(val))",
          (f"{GUARANTEES}::test_routing_scores_each_pattern_on_its_own_validation_rows_with_bootstrap_standard_errors",)),
    Break("routing-ignores-the-papers-choice", "methods/ume_mma.py", "simplest_within(scores, se, incumbent=self.selected_)",
          "simplest_within(scores, se)",
          (f"{GUARANTEES}::test_routing_keeps_the_papers_choice_within_a_standard_error_and_moves_beyond_it",)),
    Break("routing-tie-goes-to-mma", "methods/ume_mma.py", 'self.val_scores_["mma"] > self.val_scores_["ume"]',
          'self.val_scores_["mma"] >= self.val_scores_["ume"]',
          (f"{GUARANTEES}::test_routing_keeps_the_papers_choice_within_a_standard_error_and_moves_beyond_it",)),
    Break("routing-ignores-shared-sources", "methods/ume_mma.py",
          'shared = {m: val.sources[m] for m in mask.pattern.split("+") if m in val.sources}', "shared = {}",
          (f"{GUARANTEES}::test_routing_standard_errors_resample_the_groups_of_shared_sources",)),
    Break("umt-no-feature-term", "methods/distill.py", "loss + self.feature_weight * self.feature_loss(",
          "loss + 0 * self.feature_weight * self.feature_loss(",
          (f"{GUARANTEES}::test_umt_loss_is_task_plus_ten_times_the_feature_distance_on_present_rows",)),
    Break("proxy-no-reconstruction", "methods/proxy.py", "loss = loss + self.proxy_weight * nn.functional.mse_loss(",
          "loss = loss + 0 * self.proxy_weight * nn.functional.mse_loss(",
          (f"{GUARANTEES}::test_proxy_loss_adds_the_reconstruction_of_each_dropped_feature",)),
    Break("kd-full-no-distillation", "methods/distill.py", "loss = loss + self.distill_weight * distillation_loss(\n            logits",
          "loss = loss + 0 * self.distill_weight * distillation_loss(\n            logits",
          (f"{GUARANTEES}::test_kd_full_loss_mixes_the_task_and_the_full_rows_teaching",)),
    Break("kd-unimodal-no-distillation", "methods/distill.py",
          "loss = loss + self.distill_weight * distillation_loss(logits[rows]",
          "loss = loss + 0 * self.distill_weight * distillation_loss(logits[rows]",
          ("tests/test_baselines.py::test_kd_unimodal_adds_the_distillation_from_each_present_teacher",)),
    Break("ogm-coefficient-ignored", "methods/ogm_ge.py", "return grad * coefficient + noise", "return grad + noise",
          (f"{GUARANTEES}::test_ogm_ge_computes_its_coefficient_from_the_batch_and_damps_and_noises_the_dominant_encoder",)),
    Break("ogm-coefficient-never-computed", "methods/ogm_ge.py",
          "self.coefficients_ = modulation_coefficients(scores, self.alpha) if scores else {}", "self.coefficients_ = {}",
          (f"{GUARANTEES}::test_ogm_ge_computes_its_coefficient_from_the_batch_and_damps_and_noises_the_dominant_encoder",)),
    Break("ogm-no-noise", "methods/ogm_ge.py", "noise = torch.randn_like(grad) * grad.std() if", "noise = 0 * grad.std() if",
          (f"{GUARANTEES}::test_ogm_ge_computes_its_coefficient_from_the_batch_and_damps_and_noises_the_dominant_encoder",)),
    Break("ogm-modulates-all-epochs", "methods/ogm_ge.py", "if epoch < self.modulated_epochs_ else None", "",
          (f"{GUARANTEES}::test_ogm_ge_computes_its_coefficient_from_the_batch_and_damps_and_noises_the_dominant_encoder",)),
    Break("entropy-weights-equal", "fusion.py", "scores.softmax(dim=1), torch.zeros_like(scores)",
          "(scores * 0).softmax(dim=1), torch.zeros_like(scores)",
          ("tests/test_baselines.py::test_entropy_weights_are_per_row_not_per_batch",)),
    Break("missing-token-zeros", "fusion.py", 'requires_grad=missing == "learned"', "requires_grad=False",
          ("tests/test_baselines.py::test_missing_token_learns_the_vector_absent_slots_get",)),
    # issue 25: silent failures and the input gate
    Break("gate-thresholds-on-test", "experiment.py", "gate = self.fit_gate(fitted, train, val, store)",
          "gate = self.fit_gate(fitted, train, self.test, store)", (f"{GATE}::test_the_gate_reads_no_test_row",)),
    Break("gate-quantile", "gate.py", "np.quantile(values, 1.0 - false_alarms", "np.quantile(values, 0.9",
          (f"{GATE}::test_thresholds_allow_at_most_the_chosen_share_of_clean_validation_rows_and_about_that_share_on_test",)),
    Break("gate-empties-rows", "gate.py", "        if emptied.any():", "        if False:",
          (f"{GATE}::test_a_row_never_loses_every_modality_the_least_implausible_stays",)),
    Break("gate-without-input-part", "gate.py", 'if flat is not None and "input_mean" in statistics:', "if False:",
          (f"{GATE}::test_the_input_part_is_the_mahalanobis_distance_of_the_summary",)),
    Break("gate-without-levels", "gate.py", 'if flat is not None and "level_typical" in statistics:', "if False:",
          (f"{GATE}::test_a_constant_input_or_a_hiss_is_ignored_for_its_levels",)),
    Break("blank-leaves-input", "failures.py", "        return np.zeros(shape, dtype=np.float32)",
          "        return np.full(shape, 0.5, dtype=np.float32)",
          (f"{GATE}::test_broken_inputs_by_kind_leave_labels_and_the_other_modality_alone",)),
    Break("stale-own-row", "protocols.py", "source[order] = np.roll(order, -1)", "source[order] = order",
          (f"{GATE}::test_failure_protocols_are_listed_checked_seeded_and_hashed",)),
    Break("predictor-without-gate", "predictor.py", "if gate and self.gate is not None else", "if False else",
          (f"{GATE}::test_the_saved_gate_round_trips_and_says_what_it_ignored",)),
    Break("declared-is-gated", "evaluation.py", 'variants["declared"] = {**mask.present, mask.failure[0]: np.zeros_like(mask.present[mask.failure[0]])}',
          'variants["declared"] = gated', (f"{GATE}::test_a_broken_input_is_ignored_and_the_row_answered_from_the_rest",)),
    Break("extracted-failure-zeros", "failures.py", "out = frozen_features(spec[\"extractor\"], extractor.preprocess(items)).numpy()",
          "out = 0 * frozen_features(spec[\"extractor\"], extractor.preprocess(items)).numpy()", (f"{GATE}::test_an_extracted_modality_breaks_before_its_extractor",)),
    Break("reencode-keeps-clean-branch", "methods/fused.py", "return {**encoded, modality: self.encode(inputs, alone)[modality]}",
          "return encoded", (f"{GATE}::test_encoding_one_broken_modality_again_equals_encoding_everything_again",)),
    # the third round: issues 25-29
    Break("gate-blind-to-raw", "gate.py", 'looked_at = chunk.get("raw", chunk["x"])', 'looked_at = chunk["x"]',
          (f"{GATE}::test_the_gate_reads_the_raw_input_where_the_data_keeps_one",
           f"{GATE}::test_predict_ignores_a_black_or_noise_picture_by_the_picture_itself")),
    Break("raw-left-whole", "failures.py", "            broken_raw[rows] = pictures\n", "            pass\n",
          (f"{GATE}::test_a_broken_picture_breaks_the_raw_input_and_the_model_input_alike",)),
    Break("predict-reads-projected", "inputs.py", "return prepare(modality, {k: v for k, v in spec.items() if k != \"pca\"}, values, base)", "return prepare(modality, spec, values, base)",
          (f"{GATE}::test_predict_ignores_a_black_or_noise_picture_by_the_picture_itself",)),
    Break("auto-keeps-feature", "gate.py", 'return "none" if arrays else "mahalanobis"', 'return "mahalanobis"',
          (f"{GATE}::test_the_default_gate_scores_an_array_by_its_input_parts_and_tokens_by_their_feature",)),
    Break("thumbnail-block-max", "pretrained.py", "small = grey.reshape(THUMBNAIL, block, THUMBNAIL, block).mean((1, 3))",
          "small = grey.reshape(THUMBNAIL, block, THUMBNAIL, block).max((1, 3))",
          (f"{GATE}::test_a_thumbnail_is_the_grey_mean_of_each_block_by_hand",)),
    Break("text-interpolation-dropped", "textgate.py", "p = np.where(distinct > 0, (seen + distinct * p) / np.maximum(total + distinct, 1e-300), p)",
          "p = np.where(distinct > 0, (seen + 1.0) / np.maximum(total + distinct, 1e-300), p)",
          (f"{TEXT}::test_the_character_model_against_a_second_implementation",)),
    Break("text-context-unnormalised", "textgate.py", 'parts["context"][i] = float(np.sum(s - s1))',
          'parts["context"][i] = float(np.sum(s))', (f"{TEXT}::test_the_character_model_against_a_second_implementation",)),
    Break("text-repetition-case", "textgate.py", '.lower() for w in text.split()', ' for w in text.split()',
          (f"{TEXT}::test_repeated_words_by_hand",)),
    Break("text-gate-off", "gate.py", "        parts.update(text_parts(flat, statistics))\n", "        parts.update({})\n",
          (f"{TEXT}::test_the_gate_ignores_a_placeholder_a_repeated_word_and_random_letters",)),
    Break("text-view-floated", "failures.py", "_copy(raw[m], dtype=None)", "_copy(raw[m])",
          ("tests/test_manifest.py::test_run_from_a_manifest_in_one_command",)),
    Break("text-no-view-judged", "textgate.py", "None if row[0] == NO_TEXT else", "None if False else",
          (f"{TEXT}::test_a_text_view_is_its_first_code_points_and_a_row_without_text_is_not_judged",)),
    Break("distinct-rows-not-kept", "encoding.py", 'known = {} if shared is None else shared["rows"].setdefault(what, {})',
          "known = {}", ("tests/test_encoding.py::test_a_copy_with_the_same_weights_reuses_the_outputs_and_nothing_else_does",)),
    Break("repeated-rows-encoded-again", "encoding.py", "todo = [d for d in first if d not in known]",
          "todo = [d for d in digests if d not in known]",
          ("tests/test_encoding.py::test_repeated_rows_are_encoded_once_even_outside_a_seeds_block",)),
    Break("scratch-methods-wait-for-stage1", "experiment.py", "first = ([references] if references else []) + [[n] for n in alone]",
          "first, rest = [references] if references else [], alone + rest",
          ("tests/test_jobs.py::test_stage1_trains_beside_the_methods_trained_from_scratch_and_each_wave_needs_only_earlier_ones",)),
    Break("unknown-raw-flagged", "gate.py", "values[rows] = np.where(np.isnan(scored), -np.inf, scored)", "values[rows] = scored",
          (f"{GATE}::test_the_gate_reads_the_raw_input_where_the_data_keeps_one",)),
    Break("raw-not-subset", "batch.py", "raw={m: take_rows(x, rows_t) for m, x in self.raw.items()},", "",
          (f"{GATE}::test_predict_ignores_a_black_or_noise_picture_by_the_picture_itself",)),
    Break("gate-levels-min", "gate.py", "return np.exp(ratios.max(1))", "return np.exp(ratios.min(1))",
          (f"{GATE}::test_the_levels_by_hand",)),
    Break("unpaired-batch-order", "methods/fused.py", 'seed=derive_seed(self.seed, "train"),', 'seed=derive_seed(self.seed, self.name, "train"),',
          ("tests/test_pairing.py",)),
    Break("unpaired-encoders", "runtime.py", 'return derive_seed(seed, "encoder", modality)', 'return derive_seed(seed, "encoder", modality, id(object()))',
          ("tests/test_pairing.py",)),
    Break("ogm-authors-adam", "methods/ogm_ge.py", 'AUTHORS_OPTIMISER = dict(optimizer="sgd",', 'AUTHORS_OPTIMISER = dict(optimizer="adam",',
          ("tests/test_baselines.py::test_ogm_ge_authors_modulated_update_is_the_coefficient_under_their_sgd_and_not_under_adam",)),
    Break("plain-percentile", "evidence.py", "    expanded = expanded_level(level, units)", "    expanded = level",
          ("tests/test_guarantees.py::test_evidence_records_by_hand_across_seeds_and_incomplete_runs",)),
    Break("value-by-percentiles", "evidence.py", "    return effective_interval(value, float(values.var(ddof=1)), level, units, rows)",
          "    return expanded_percentile(values, level, units)",
          ("tests/test_evidence.py::test_intervals_hold_their_level_with_few_correlated_groups_near_the_ceiling",)),
    Break("effective-uncapped", "evidence.py", "effective = min(value * (1 - value) / variance, rows) if variance > 0 else rows",
          "effective = value * (1 - value) / variance if variance > 0 else rows",
          ("tests/test_evidence.py::test_the_interval_of_independent_rows_is_clopper_pearsons",)),
    Break("effective-few-units", "evidence.py", "    effective *= (stats.t.ppf(tail, rows - 1) / stats.t.ppf(tail, units - 1)) ** 2\n", "",
          ("tests/test_evidence.py::test_the_interval_of_independent_rows_is_clopper_pearsons",
           "tests/test_guarantees.py::test_evidence_retention_from_the_full_pattern_and_groups_from_sources_when_rows_differ")),
    Break("point-at-ceiling", "evidence.py", "bound, point = z * z / (units + z * z), float(values[0])",
          "bound, point = 0.0, float(values[0])", ("tests/test_evidence.py::test_verdicts_and_retention",)),
    Break("routing-reach-free", "methods/ume_mma.py", "return next(c for c in within if scores[c] >= scores[incumbent])",
          "return next(c for c in candidate_order(scores) if scores[c] >= scores[incumbent])",
          ("tests/test_routing.py::test_the_routing_rule_is_the_one_the_docs_state_on_random_cases",)),
    Break("crossed-as-rows", "evidence.py", '    if all(np.ndim(ids) == 1 for ids in sources.values()):',
          '    if True:', ("tests/test_evidence.py::test_rows_made_of_two_shared_sources_are_resampled_crossed",)),
    Break("negative-temperature", "calibration.py", "or not math.isfinite(value) or value <= 0:", "or not math.isfinite(value):",
          ("tests/test_predictor.py::test_an_edited_calibration_file_is_refused_not_applied",)),
    Break("yaml-aliases", "config.py", "        if self.check_event(yaml.AliasEvent):", "        if False:",
          ("tests/test_config.py::test_a_yaml_alias_bomb_is_refused_wherever_it_appears_before_any_folder",)),
    Break("no-run-lock", "pipeline.py", "    if fcntl is None or not distributed.is_main():", "    if True:",
          ("tests/test_cli.py::test_a_run_folder_is_locked_while_a_process_writes_it",)),
    Break("one-checkpoint", "train.py", 'for old in sorted(folder.glob("epoch-*"))[:-KEPT_EPOCHS]:',
          'for old in sorted(folder.glob("epoch-*"))[:-1]:',
          ("tests/test_resume.py::test_a_truncated_checkpoint_falls_back_to_the_epoch_before_or_says_what_to_delete",)),
    Break("ave-first-listing", "data/avclips.py", "last = {clip: label for clip, label in rows}  # the last listing wins",
          "last = {clip: label for clip, label in reversed(rows)}",
          ("tests/test_avclips.py::test_ave_released_lists_one_row_per_video_never_in_training_if_evaluated",)),
    Break("ave-test-in-train", "data/avclips.py", '    for split in ("test", "val", "train"):', '    for split in ("train", "val", "test"):',
          ("tests/test_avclips.py::test_ave_released_lists_one_row_per_video_never_in_training_if_evaluated",)),
    Break("ks-labels-as-text", "data/avclips.py", "labels = [label for label in order if label in seen] if order else sorted(seen)",
          "labels = sorted(seen)", ("tests/test_avclips.py::test_kinetics_sound_published_lists_with_each_media_layout",)),
    Break("mmimdb-first-plot", "data/mmimdb.py", "    return max(plots, key=len)  # the first of the longest", "    return plots[0]",
          ("tests/test_vl_datasets.py::test_mmimdb_text_choice_and_maps_layout",)),
    Break("conformal-ties", "calibration.py", 'np.searchsorted(ordered, test[rows], side="left")',
          'np.searchsorted(ordered, test[rows], side="right")', ("tests/test_conformal_reference.py",)),
    # issue 28: one numbering for a manifest's rows; issue 29: workers, shared encodings, the fast pool
    Break("manifest-row-index", "data/manifest.py", "lines.append(line)\n    return header, rows, lines",
          "lines.append(len(rows) + 1)\n    return header, rows, lines",
          ("tests/test_manifest.py::test_a_manifest_row_is_named_by_its_line_everywhere",)),
    Break("validate-split-index", "validate.py", 'place = {"line": self.lines[row]} if self.lines else {"row": row}',
          'place = {"row": row}', ("tests/test_manifest.py::test_a_value_found_bad_after_loading_is_named_by_its_line",)),
    Break("worker-writes-fits", "pipeline.py", "    def fits(self, fits: list[dict]) -> None:\n        pass",
          "    def fits(self, fits: list[dict]) -> None:\n        super().fits(fits)",
          ("tests/test_jobs.py::test_a_worker_writes_its_seed_and_never_the_runs_shared_files",)),
    Break("worker-outlives-run", "pipeline.py", "initializer=die_with_parent, initargs=(os.getpid(),)",
          "initializer=None, initargs=()", ("tests/test_jobs.py::test_a_worker_dies_with_the_run",)),
    Break("jobs-in-fingerprint", "config.py", 'SCHEDULING = ("jobs",)', "SCHEDULING = ()",
          ("tests/test_jobs.py::test_jobs_is_how_fast_not_what_so_it_is_not_in_the_fingerprint",)),
    Break("share-by-architecture-only", "encoding.py", "        h.update(_bytes(tensor))\n", "",
          ("tests/test_encoding.py::test_a_copy_with_the_same_weights_reuses_the_outputs_and_nothing_else_does",)),
    Break("share-nothing", "encoding.py", "        return shared[\"outputs\"][key][1]", "        pass",
          ("tests/test_encoding.py::test_an_input_not_hashed_by_rows_is_shared_by_its_outputs",)),
    Break("fast-pool-in-training", "encoders/cnn.py", "if torch.is_grad_enabled() and x.requires_grad:", "if False:",
          ("tests/test_encoders.py::test_the_fast_max_pool_gives_torchs_numbers_and_torchs_gradients",)),
    # issue 37: your own data as it comes
    Break("audio-first-channel", "media.py", "return data.mean(axis=1, dtype=np.float32), int(rate)",
          "return data[:, 0].copy(), int(rate)", (f"{MEDIA}::test_channels_are_averaged_after_scaling",)),
    Break("wav-truncation-unchecked", "media.py", "if length != 0xFFFFFFFF and length > left:", "if False:",
          (f"{MEDIA}::test_damaged_audio_is_one_line_naming_the_file",)),
    Break("frames-not-evenly-spaced", "media.py", "return np.linspace(0, total - 1, n).round().astype(np.int64)",
          "return np.arange(n) % total", (f"{MEDIA}::test_evenly_spaced_matches_the_frame_encoders_evaluation_sampling",
                                          f"{MEDIA}::test_a_videos_frames_are_evenly_spaced_and_its_sound_is_its_track")),
    Break("video-truncation-unchecked", "media.py", "if declared and max(times) - min(times) + step < 0.9 * declared:",
          "if False:", (f"{MEDIA}::test_damaged_videos_are_one_line_naming_the_file",)),
    Break("paths-read-as-text", "data/manifest.py", "    if sum(pathlike) * 2 < len(filled):", "    if True:",
          (f"{MANIFEST}::test_a_column_of_media_paths_gets_its_kind_never_text",)),
    Break("ogg-not-audio", "media.py", '".flac", ".ogg", ".oga",', '".flac", ".oga",',
          (f"{MANIFEST}::test_a_column_of_media_paths_gets_its_kind_never_text",
           f"{MEDIA}::test_every_common_audio_format_decodes_to_its_source")),
    Break("unsupported-files-as-text", "data/manifest.py", "    if not counts:\n", "    if not counts:\n        return \"text\"\n",
          (f"{MANIFEST}::test_a_column_of_unsupported_or_mixed_files_is_refused_never_text",)),
    Break("predict-path-as-text", "inputs.py", "        if names_file(text, base) or (one_word and media_kind(text)):", "        if False:",
          (f"{MEDIA}::test_predict_never_reads_a_file_path_as_a_models_text",)),
    Break("video-first-frame-only", "pretrained.py", "return self.frame_encoder(clips.flatten(0, 1)).view(b, t, -1).mean(1)",
          "return self.frame_encoder(clips[:, 0])", (f"{VIDEO}::test_a_video_column_can_be_fine_tuned_through_its_frames",)),
    Break("decode-failures-forgotten", "data/table.py", "                cache.put_failure(keys[row], str(err).removeprefix(f\"{path}: \"))",
          "                pass", (f"{VIDEO}::test_video_features_and_their_sound_are_cached_by_content",)),
    Break("sound-view-not-density", "pretrained.py", "    bank = bank / bank.sum(1, keepdim=True).clamp(min=1e-12)\n", "",
          (f"{GATE}::test_a_sound_thumbnail_shows_silence_hiss_and_hum_by_hand",)),
    Break("silent-validation-sets-threshold", "gate.py", "            parts = _without_degenerate(m, parts)\n", "",
          (f"{GATE}::test_a_silent_validation_recording_sets_no_threshold",)),
    Break("few-rows-largest-threshold", "gate.py", "    if n * false_alarms >= 1 or n < TAIL_MIN_ROWS:", "    if True:",
          (f"{GATE}::test_with_few_clean_rows_the_threshold_extrapolates_the_tail",)),
    Break("lone-failures-scored", "protocols.py", "mask = _mask(spec, observed, scored=observed[modality] & others)",
          "mask = _mask(spec, observed, scored=observed[modality])", (f"{GATE}::test_a_failure_is_scored_where_declaring_it_missing_leaves_something",)),
    Break("false-alarms-on-full-only", "records.py", 'clean = "observed" if any(s["protocol"] == "observed" for s in summary) else "full"',
          'clean = "full"', ("tests/test_report.py::test_false_alarms_are_counted_where_the_modality_is_present",)),
    Break("reliability-one-row", "report.py", "    columns = min(len(patterns), RELIABILITY_COLUMNS)",
          "    columns = len(patterns)", ("tests/test_report.py::test_the_reliability_figure_stays_readable_at_seven_patterns",)),
    Break("no-residual-part", "gate.py", '        parts["residual"] = input_residual(coarse, statistics)', "        pass",
          ("tests/test_degraded.py::test_the_gate_sees_a_moved_digit_and_counts_a_noisy_ones_noise_out",)),
    Break("residual-without-noise-floor", "gate.py",
          "    floor = (basis.shape[0] - basis.shape[1]) * noise ** 2 / COARSE_BLOCK ** 2", "    floor = 0.0",
          ("tests/test_degraded.py::test_the_gate_sees_a_moved_digit_and_counts_a_noisy_ones_noise_out",)),
    Break("soft-mass-of-nothing-dropped", "evaluation.py", "        present = hard if not any(keep) else {",
          "        present = {m: torch.zeros(len(mask.scored), dtype=torch.bool) for m in method.modalities} if not any(keep) else {",
          ("tests/test_degraded.py::test_the_soft_gate_is_the_mixture_by_hand_and_the_hard_gate_or_no_gate_at_its_extremes",)),
    Break("corrupt-every-row", "failures.py", "    rows = np.flatnonzero(mask.scored if mask.altered is None else mask.altered & mask.scored)",
          "    rows = np.flatnonzero(mask.scored)",
          ("tests/test_degraded.py::test_pictures_degrade_before_their_projection_and_only_on_the_altered_rows",)),
    Break("corrupt-after-projection", "failures.py", "    pictures = _copy(raw[m])[1] if m in raw else original",
          "    pictures = original",
          ("tests/test_degraded.py::test_pictures_degrade_before_their_projection_and_only_on_the_altered_rows",)),
    Break("degraded-text-view-as-float", "failures.py",
          "        broken_raw = _copy(raw[m], dtype=None)[0]  # its own dtype: a text view holds code points",
          "        broken_raw = _copy(raw[m])[0]",
          ("tests/test_degraded.py::test_a_picture_or_text_read_through_an_extractor_is_read_again_degraded_and_extracted",)),
    Break("clean-rows-degraded", "evaluation.py",
          "            clean_proba, clean_target, _ = _scored_proba(method, clean, data, mask)",
          "            clean_proba, clean_target, _ = _scored_proba(method, encoded, data, mask)",
          ("tests/test_degraded.py::test_a_corrupt_condition_is_also_scored_on_its_own_rows_with_their_inputs_clean",)),
    Break("videos-ignored-by-ave", "data/avclips.py", "    frames = frames if frames.is_dir() or video is None else video",
          "    frames = frames", ("tests/test_avclips.py::test_ave_and_kinetics_sound_read_the_downloaded_videos",)),
)


def run(case: Break) -> bool:
    """True when the broken code makes the named tests fail."""
    path = SRC / case.file
    original = path.read_text(encoding="utf-8")
    if original.count(case.old) != 1:
        raise SystemExit(f"{case.name}: the text to break is not in {case.file} exactly once; update the case")
    try:
        path.write_text(original.replace(case.old, case.new), encoding="utf-8")
        result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *case.tests],
                                cwd=ROOT, capture_output=True, text=True)
    finally:
        path.write_text(original, encoding="utf-8")
    return result.returncode == 1


def main(argv: list[str]) -> int:
    cases = [c for c in CASES if not argv or any(a in c.name for a in argv)]
    survivors = []
    for case in cases:
        caught = run(case)
        print(f"{'caught  ' if caught else 'MISSED  '} {case.name}: {case.file}", flush=True)
        survivors += [] if caught else [case.name]
    print(f"{len(cases) - len(survivors)} of {len(cases)} broken behaviours caught")
    return 1 if survivors else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
