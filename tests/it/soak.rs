//! The soak test: a retrying, duplicating sender against faulty fakes (issue #7).
