DROP INDEX "User_emailAddress_key";
