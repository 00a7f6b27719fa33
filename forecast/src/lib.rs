//! Demand forecasting and capacity planning (issue 6).
