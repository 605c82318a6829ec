"""Small reusable widgets: level meter, labelled value slider, compute-budget bar."""
from app.widgets.budget_bar import BudgetBar, budget_colour
from app.widgets.level_meter import LevelMeter
from app.widgets.value_slider import ValueSlider

__all__ = ["BudgetBar", "LevelMeter", "ValueSlider", "budget_colour"]
