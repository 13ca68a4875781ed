"""The pure lifecycle checks: which configured model is in trouble, how badly, and what to do about it."""
from datetime import date

from img2img.lifecycle import (
    DENIED,
    ERROR,
    GONE,
    INFO,
    INVOCABLE,
    WARNING,
    ModelFacts,
    Plan,
    Quota,
    check,
    counts,
    exit_status,
    is_retirement,
    matching_quotas,
    replacement_for,
)

SD35, SDXL = "stability.sd3-5-large-v1:0", "stability.stable-diffusion-xl-v1"
INPAINT = "us.stability.stable-image-inpaint-v1:0"
TODAY = date(2026, 10, 1)
PLAN = Plan(region="us-west-2", models={SD35: ("image-to-image",), INPAINT: ("inpaint",)}, concurrency=8,
            offered_in={SD35: ("us-west-2",)})


def problems(*facts, plan=PLAN):
    return check(facts, plan, TODAY)


def healthy(model=SD35, **changes):
    return ModelFacts(**{"model_id": model, "operations": PLAN.models.get(model, ()), "status": "ACTIVE",
                         "probe": INVOCABLE, "model_name": "Stable Diffusion 3.5 Large", **changes})


def test_a_healthy_model_has_no_problem_and_the_doctor_passes():
    assert problems(healthy(), healthy(INPAINT, served_regions=("us-east-1", "us-west-2"))) == []
    assert exit_status([]) == 0


def test_legacy_is_an_error_whose_advice_names_the_successor():
    [p] = problems(healthy(SDXL.replace("xl-v1", "xl-v0"), status="LEGACY", legacy_date=date(2026, 3, 1),
                           end_of_life_date=date(2027, 3, 1)))
    assert (p.kind, p.severity) == ("legacy", ERROR)
    assert "since 2026-03-01" in p.detail and "end of life 2027-03-01" in p.detail
    assert f"move to {SD35}" in p.advice
    assert exit_status([p]) == 1


def test_end_of_life_within_90_days_alarms_further_out_only_warns():
    [soon] = problems(healthy(end_of_life_date=date(2026, 12, 15)))
    [later] = problems(healthy(end_of_life_date=date(2027, 6, 30)))
    assert (soon.kind, soon.severity) == ("end_of_life_soon", ERROR) and "(75 days)" in soon.detail
    assert (later.kind, later.severity) == ("end_of_life_scheduled", WARNING)
    assert "no successor is known" in soon.advice  # SD3.5 has none in the table


def test_past_end_of_life_or_a_retirement_answer_is_retired():
    [dated] = problems(healthy(end_of_life_date=date(2026, 9, 30)))
    [answered] = problems(healthy(probe=GONE, probe_message="This model version has reached the end of its life."))
    assert dated.kind == answered.kind == "retired" and "reached the end of its life" in answered.detail


def test_sdxl_kept_as_the_contract_is_reported_but_never_alarms():
    [p] = problems(healthy(SDXL, probe=GONE, probe_message="reached the end of its life"))
    assert (p.kind, p.severity) == ("retired", INFO) and "documented contract" in p.advice
    assert exit_status([p]) == 0 and counts([p])["retired"] == 0


def test_not_offered_in_the_region_says_where_it_is():
    [p] = problems(healthy(found=False, probe="unknown"), plan=Plan("eu-west-1", {SD35: ()}, 8, {SD35: ("us-west-2",)}))
    assert (p.kind, p.severity) == ("not_in_region", ERROR)
    assert "offered in us-west-2" in p.detail and "bedrockRegion=us-west-2" in p.advice


def test_a_profile_missing_from_the_region_is_not_in_region():
    [p] = problems(healthy(INPAINT, served_regions=()))
    assert p.kind == "not_in_region" and p.operations == ("inpaint",)


def test_not_invocable_points_at_model_access():
    [p] = problems(healthy(probe=DENIED, probe_message="You don't have access to the model"))
    assert (p.kind, p.severity) == ("not_invocable", ERROR) and "Model access" in p.advice


def test_a_quota_too_small_for_the_concurrency_says_how_much_to_raise():
    small = Quota("L-1234", "On-demand model inference requests per minute for Stable Diffusion 3.5 Large", 20)
    [p] = problems(healthy(quotas=(small,)))
    assert (p.kind, p.severity) == ("quota_too_small", WARNING)
    assert "L-1234 to at least 48 (+28)" in p.advice and "bedrockMaxConcurrency to 3" in p.advice
    assert problems(healthy(quotas=(Quota("L-1", small.name, 48),))) == []


def test_quotas_match_by_model_name_and_kind_of_call():
    on_demand = Quota("L-1", "On-demand model inference requests per minute for Stable Image Inpaint", 10)
    cross = Quota("L-2", "Cross-region model inference requests per minute for Stable Image Inpaint", 10)
    other = Quota("L-3", "Cross-region model inference requests per minute for Stable Image Erase Object", 1)
    assert matching_quotas(INPAINT, "Stable Image Inpaint", [on_demand, cross, other]) == (cross,)
    assert matching_quotas("stability.stable-image-inpaint-v1:0", "Stable Image Inpaint", [on_demand, cross]) == (
        on_demand,)


def test_problems_are_ordered_most_severe_first_and_counted_per_kind():
    found = problems(healthy(end_of_life_date=date(2027, 6, 30)), healthy(INPAINT, probe=DENIED, probe_message="no"))
    assert [p.severity for p in found] == [ERROR, WARNING]
    assert counts(found)["not_invocable"] == 1 and counts(found)["legacy"] == 0


def test_retirement_answers_are_recognised_and_the_replacement_keeps_the_profile_form():
    assert is_retirement("This model version has reached the end of its life. Please refer to the AWS docs")
    assert is_retirement("Access denied. This Model is marked by provider as Legacy and you have not been "
                         "actively using the model in the last 30 days.")
    assert not is_retirement("The requested resource could not be found.")
    assert replacement_for(SDXL) == SD35 and replacement_for(f"us.{SDXL}") == f"us.{SD35}"
    assert replacement_for(SD35) is None


def test_the_plan_travels_through_the_environment():
    assert Plan.from_env(PLAN.to_env()) == PLAN
