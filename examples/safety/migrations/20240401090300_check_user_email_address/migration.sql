-- Release N, expand step 4: require the new column for new rows (the trigger fills it
-- for old pods), without scanning the table: NOT VALID skips the existing rows.
ALTER TABLE "User" ADD CONSTRAINT "User_emailAddress_not_null" CHECK ("emailAddress" IS NOT NULL) NOT VALID;
